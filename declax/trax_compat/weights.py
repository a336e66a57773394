"""Trax's flat weight list onto a declax parameter tree, and Trax's Adam slots onto optax's.

Trax flattens weights depth first in the order its layers were initialised; declax creates its
parameters in the same order, so `param_order` (the paths of `model.init`'s parameters in
creation order, read while tracing) pairs them one to one. Per module the pairing is one array
to one parameter, except where declax stores the same numbers in another shape:

- attention projections: Trax's `Dense(d_feature)` kernels `(d, d)` and biases `(d,)` are
  declax's per-head `(d, n_heads, d_head)` / `(n_heads, d_head)`, and its output kernel
  `(d, d)` is `(n_heads, d_head, d)` (Trax splits heads the same row-major way);
- LSTM/GRU layers: Trax's one kernel on `concat([x, h])` is declax's `input_kernel` (its first
  rows) and `recurrent_kernel` (the rest);
- an old `(1, max_len, d)` position table is today's `(max_len, d)`;
- efficient attention with `bias=True`: Trax stores all kernels, then all biases (`w_q, w_k,
  w_v, w_o, b_q, b_k, b_v`); declax creates each bias after its kernel.

```python
paths = param_order(model, x)                    # [('layers_1', 'kernel'), ...]
params = unflatten_trax(flat_weights, paths, shapes)
```
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from declax.trax_compat.files import TraxCheckpointError

__all__ = ["param_order", "unflatten_trax"]

Path = tuple[str, ...]

_RNN_LEAVES = ("input_kernel", "recurrent_kernel", "bias")
_ATTENTION_LEAF = re.compile(r"[wb]_[qkvo]")


def _trax_order(leaves: list[Path]) -> list[Path]:
  """A module's parameters in Trax's weight order (differs only for efficient attention with
  biases: kernels first, then biases)."""
  names = [p[-1] for p in leaves]
  if all(_ATTENTION_LEAF.fullmatch(n) for n in names) and any(n[0] == "b" for n in names):
    return [p for p in leaves if p[-1][0] == "w"] + [p for p in leaves if p[-1][0] == "b"]
  return leaves


def _ordered_leaves(tree: Any, prefix: Path = ()) -> list[tuple[Path, Any]]:
  """Leaves of a nested dict in insertion (= creation) order, not jax's sorted key order."""
  out = []
  for key, value in tree.items():
    if isinstance(value, dict) or (hasattr(value, "items") and not isinstance(
        value, nn.meta.AxisMetadata)):
      out += _ordered_leaves(value, prefix + (key,))
    else:
      out.append((prefix + (key,), value))
  return out


def param_order(model: nn.Module, *example_inputs: Any) -> tuple[list[Path], Any]:
  """`(paths, abstract_variables)`: the parameter paths of `model.init` in creation order, and
  the variables as `jax.ShapeDtypeStruct`s (nothing is computed or allocated)."""
  order: list[Path] = []

  def init(rng, *inputs):
    variables = model.init(rng, *inputs)
    order.extend(path for path, _ in _ordered_leaves(dict(variables.get("params", {}))))
    return variables

  abstract = jax.eval_shape(init, jax.random.key(0), *example_inputs)
  return order, abstract


def _groups(paths: Sequence[Path]) -> list[tuple[Path, list[Path]]]:
  """Consecutive parameters of one module: `[(module_path, [leaf paths]), ...]`."""
  groups: list[tuple[Path, list[Path]]] = []
  for path in paths:
    if groups and groups[-1][0] == path[:-1]:
      groups[-1][1].append(path)
    else:
      groups.append((path[:-1], [path]))
  return groups


def _fit(array: np.ndarray, shape: tuple) -> np.ndarray | None:
  """`array` in declax's `shape` if it holds the same numbers in Trax's layout, else None."""
  if array.shape == shape:
    return array
  if array.size != int(np.prod(shape)):
    return None
  split_heads = (len(shape) == 3 and array.ndim == 2 and array.shape[0] == shape[0])
  merge_heads = (len(shape) == 3 and array.ndim == 2 and array.shape[1] == shape[2])
  per_head_bias = len(shape) == 2 and array.ndim == 1
  old_table = array.ndim == 3 and array.shape[0] == 1 and array.shape[1:] == shape
  if split_heads or merge_heads or per_head_bias or old_table:
    return array.reshape(shape)
  return None


def _fmt(path: Path) -> str:
  return "/".join(path)


def unflatten_trax(flat: Sequence[np.ndarray], paths: Sequence[Path], shapes: dict[Path, tuple],
                   what: str = "weights") -> dict[Path, np.ndarray]:
  """Pairs Trax's flat arrays with declax parameter `paths` (creation order); returns
  `{path: array}` in declax's shapes, or raises `TraxCheckpointError` listing every mismatch."""
  result: dict[Path, np.ndarray] = {}
  mismatches: list[str] = []
  i = 0
  for module, leaves in _groups(paths):
    names = tuple(p[-1] for p in leaves)
    if names == _RNN_LEAVES:
      # One Trax kernel on concat([x, h]) -> declax's input and recurrent kernels.
      d_input = shapes[leaves[0]][0]
      kernel = flat[i] if i < len(flat) else None
      bias = flat[i + 1] if i + 1 < len(flat) else None
      want = (d_input + shapes[leaves[1]][0], shapes[leaves[0]][1])
      if kernel is None or bias is None or kernel.shape != want or bias.shape != shapes[leaves[2]]:
        got = [None if a is None else a.shape for a in (kernel, bias)]
        mismatches.append(f"  {_fmt(module)} (RNN): Trax {what} #{i}-{i + 1} have shapes {got}, "
                          f"declax needs {want} and {shapes[leaves[2]]}")
      else:
        result[leaves[0]], result[leaves[1]] = kernel[:d_input], kernel[d_input:]
        result[leaves[2]] = bias
      i += 2
      continue
    for path in _trax_order(leaves):
      if i >= len(flat):
        mismatches.append(f"  {_fmt(path)} {shapes[path]}: no Trax array left (the checkpoint "
                          f"has {len(flat)} {what})")
        i += 1
        continue
      fitted = _fit(np.asarray(flat[i]), shapes[path])
      if fitted is None:
        mismatches.append(f"  {_fmt(path)}: declax shape {shapes[path]}, Trax {what} #{i} has "
                          f"shape {flat[i].shape}")
      else:
        result[path] = fitted
      i += 1
  if i < len(flat):
    extra = [str(a.shape) for a in flat[i:]]
    mismatches.append(f"  {len(flat) - i} Trax {what} left over (#{i}..: {', '.join(extra[:5])}"
                      f"{', ...' if len(extra) > 5 else ''})")
  if mismatches:
    raise TraxCheckpointError(
        f"the checkpoint's {len(flat)} {what} do not fit the model's {len(paths)} parameters "
        f"(taken in Trax's order):\n" + "\n".join(mismatches[:20])
        + ("\n  ..." if len(mismatches) > 20 else "")
        + "\nBuild the model with the arguments Trax was given (model_from_trax(name, "
          "**trax_kwargs))")
  return result
