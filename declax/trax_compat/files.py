"""Reading Trax checkpoint files without running code from them.

A Trax 1.4 `Loop` checkpoint is `model.pkl.gz` (a gzipped pickle of a dict: `step`,
`flat_weights`, `flat_state`, `input_signature`, ...) next to `model.weights.npy.gz` and
`model.opt_slots{i}.npy.gz` (gzipped arrays written one after another by `np.save`). Older
checkpoints and `Layer.save_to_file` files keep the weights inside the pickle.

Pickles run code by design, so the unpickler here resolves only an allow-list of names: numpy
arrays and dtypes, jax's array reconstruction (done with numpy), and Trax's `ShapeDtype` and
`History` (mapped to small stand-ins). Anything else raises `TraxCheckpointError`.

```python
ckpt = read_checkpoint('../shared/trax_checkpoints/mlp/model.pkl.gz')
ckpt.step, len(ckpt.flat_weights), ckpt.input_signature   # 50, 6, (ShapeDtype(...),)
```
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import io
import os
import pickle
import zlib
from typing import Any

import numpy as np

from declax.errors import DeclaxError

__all__ = ["ShapeDtype", "TraxCheckpoint", "TraxCheckpointError", "read_checkpoint",
           "read_arrays"]


class TraxCheckpointError(DeclaxError, ValueError):
  """A Trax checkpoint file that declax cannot (or will not) read, or that does not fit a model."""


class ShapeDtype:
  """Stand-in for `trax.shapes.ShapeDtype` when unpickling: just `shape` and `dtype`."""

  __slots__ = ("shape", "dtype")

  def __init__(self, shape=(), dtype=np.float32):
    self.shape, self.dtype = tuple(shape), np.dtype(dtype)

  def __setstate__(self, state):
    slots = state[1] if isinstance(state, tuple) else state
    self.shape, self.dtype = tuple(slots["shape"]), np.dtype(slots["dtype"])

  def __repr__(self) -> str:
    return f"ShapeDtype{{shape:{self.shape}, dtype:{self.dtype}}}"


class _History:
  """Stand-in for `trax.supervised.history.History` (old checkpoints pickle the object)."""

  def __setstate__(self, state):
    self.__dict__.update(state if isinstance(state, dict) else {})


def _reconstruct(subtype, shape, dtype):
  # numpy's own helper builds an empty ndarray; only the ndarray class itself is accepted.
  if subtype is not np.ndarray:
    raise TraxCheckpointError(f"refused to rebuild an array of class {subtype!r}")
  return np.ndarray.__new__(np.ndarray, shape, dtype)


def _dtype(name, align=False, copy=True):
  dtype = np.dtype(name, align, copy)
  if dtype.hasobject:  # object arrays would unpickle arbitrary objects
    raise TraxCheckpointError(f"refused an array of dtype {dtype} (Python objects)")
  return dtype


def _jax_array(fun, args, arr_state, aval_state):
  """`jax._src.array._reconstruct_array`, done with numpy (no device, no code from the file)."""
  del aval_state  # weak_type: irrelevant for numpy
  if fun is not _reconstruct:
    raise TraxCheckpointError(f"refused a jax array rebuilt by {fun!r}")
  array = fun(*args)
  array.__setstate__(arr_state)
  return array


def _scalar(dtype, data=None):
  return np.frombuffer(data, dtype=_dtype(dtype))[0] if data is not None else dtype.type()


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("jax._src.array", "_reconstruct_array"): _jax_array,
    ("trax.shapes", "ShapeDtype"): ShapeDtype,
    ("trax.supervised.history", "History"): _History,
    ("collections", "defaultdict"): collections.defaultdict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "list"): list,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only the names in `_ALLOWED`: a checkpoint can hold data, never code."""

  path = ""

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    raise TraxCheckpointError(
        f"{self.path}: refused to unpickle {module}.{name}: a Trax checkpoint holds only numpy "
        f"arrays and Trax's ShapeDtype, and loading this class could run code. Load only "
        f"checkpoints written by Trax's Loop or Layer.save_to_file")


def _unpickle(data: bytes, path: str) -> Any:
  unpickler = _RestrictedUnpickler(io.BytesIO(data))
  unpickler.path = path
  try:
    return unpickler.load()
  except TraxCheckpointError as error:
    if str(error).startswith(path):
      raise
    raise TraxCheckpointError(f"{path}: {error}") from None
  except Exception as error:  # noqa: BLE001 -- any parse failure means "not a Trax pickle"
    raise TraxCheckpointError(f"{path}: not a Trax checkpoint pickle ({type(error).__name__}: "
                              f"{error})") from error


def _gunzip(path: str) -> bytes:
  if not os.path.exists(path):
    raise TraxCheckpointError(f"{path}: no such file (expected a Trax checkpoint "
                              f"'model.pkl.gz' or a file written by Layer.save_to_file)")
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as error:
    raise TraxCheckpointError(f"{path}: not a gzip file ({error}); Trax checkpoints are "
                              f"gzipped pickles (model.pkl.gz)") from error


def read_arrays(path: str) -> list[np.ndarray]:
  """The arrays of a `*.weights.npy.gz` / `*.opt_slots{i}.npy.gz` file, in order.

  ```python
  arrays = read_arrays('../shared/trax_checkpoints/mlp/model.weights.npy.gz')   # 6 arrays
  ```
  """
  data = io.BytesIO(_gunzip(path))
  arrays = []
  while data.tell() < len(data.getbuffer()):
    try:
      arrays.append(np.load(data, allow_pickle=False))
    except ValueError as error:
      raise TraxCheckpointError(f"{path}: array {len(arrays)} is not a .npy array ({error})"
                                ) from error
  return arrays


@dataclasses.dataclass
class TraxCheckpoint:
  """What a Trax checkpoint holds: the flat weights (Trax's order), the step, the optimizer
  slots of task 0 (None if absent) and the input signature (None if not saved)."""

  path: str
  flat_weights: list[np.ndarray]
  step: int | None
  flat_slots: list[np.ndarray] | None
  input_signature: Any
  flat_state: list


def read_checkpoint(path: str) -> TraxCheckpoint:
  """Reads a Trax `Loop` checkpoint (`model.pkl.gz` + `model.weights.npy.gz` [+
  `model.opt_slots0.npy.gz`]) or a `save_to_file` pickle, without running code from it.

  ```python
  ckpt = read_checkpoint('../shared/trax_checkpoints/mlp/model.pkl.gz')
  ```
  """
  path = os.fspath(path)
  content = _unpickle(_gunzip(path), path)
  if not isinstance(content, dict) or "flat_weights" not in content:
    keys = sorted(content) if isinstance(content, dict) else type(content).__name__
    raise TraxCheckpointError(f"{path}: not a Trax checkpoint: expected a dict with "
                              f"'flat_weights' (Loop.save_checkpoint or Layer.save_to_file), "
                              f"got {keys}")
  flat = content["flat_weights"]
  base = path[: -len(".pkl.gz")] if path.endswith(".pkl.gz") else path
  if isinstance(flat, int):  # Trax >= 1.3.8 keeps the weights in a separate .npy.gz file
    weights_path = base + ".weights.npy.gz"
    if not os.path.exists(weights_path):
      weights_path = path + ".npy"
    flat = read_arrays(weights_path)
  flat = [_from_bits(np.asarray(w)) for w in flat]
  slots_path = base + ".opt_slots0.npy.gz"
  slots = content.get("slots")
  if os.path.exists(slots_path):
    slots = read_arrays(slots_path)
  elif slots is not None:  # old format: the slots pickled as one (m, v) tuple per weight
    slots = list(_flatten(slots))
  if slots is not None:
    slots = [_from_bits(np.asarray(s)) for s in slots]
  signature = content.get("input_signature")
  step = content.get("step")
  return TraxCheckpoint(path, flat, None if step is None else int(step), slots, signature,
                        list(content.get("flat_state") or []))


def _flatten(tree: Any):
  """Trax's `tree_flatten`, dropping empty tuples and None (as `_flatten_and_remove_empty`)."""
  if isinstance(tree, (list, tuple)):
    for t in tree:
      yield from _flatten(t)
  elif isinstance(tree, dict):
    for t in tree.values():
      yield from _flatten(t)
  elif tree is not None:
    yield tree


def _from_bits(array: np.ndarray) -> np.ndarray:
  # Trax stores bfloat16 weights as their uint16 bits (`Loop._to_bits`).
  if array.dtype == np.uint16:
    import ml_dtypes  # a jax dependency
    return array.view(ml_dtypes.bfloat16)
  return array
