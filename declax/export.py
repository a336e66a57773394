"""A trained model as one StableHLO file (`jax.export`): callable later without declax.

`export(model, variables, *example_inputs)` bakes the variables into the program as constants
and makes the batch dimension symbolic, so the file serves any batch size. `save` writes the
serialized bytes; `load` needs only `jax` to read them back and returns a plain function.

```python
import jax, jax.numpy as jnp
import declax.layers as tl
from declax import export

model = tl.Serial(tl.Dense(4), tl.Relu(), tl.Dense(2))
variables = model.init(jax.random.PRNGKey(0), jnp.zeros((3, 5)))
export.save(export.export(model, variables, jnp.zeros((3, 5))), '/tmp/mlp.stablehlo')
predict = export.load('/tmp/mlp.stablehlo')        # jax only: no declax, no flax
predict(jnp.ones((7, 5))).shape                    # (7, 2): any batch size
```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from declax.errors import DeclaxError


class ExportError(DeclaxError, ValueError):
  """A model that cannot be exported as given (inputs, batch dimension, platform)."""


def export(model: Any, variables: Mapping, *example_inputs: Any, batch_polymorphic: bool = True,
           platforms: Sequence[str] | None = None) -> jax.export.Exported:
  """`model.apply(variables, *inputs)` as a `jax.export.Exported` with the variables inside.

  - `example_inputs`: arrays or `jax.ShapeDtypeStruct`s giving each input's shape and dtype.
  - `batch_polymorphic`: leading dimension symbolic (`b`), shared by every input.
  - `platforms`: e.g. `('cpu', 'cuda')` to serve on several; default: the current backend.
  """
  if not example_inputs:
    raise ExportError("export needs one example input per model input (arrays or "
                      "jax.ShapeDtypeStruct), e.g. export(model, variables, jnp.zeros((1, 28)))")
  variables = jax.tree.map(np.asarray, dict(variables))  # constants, not arguments

  def apply(*inputs):
    return model.apply(variables, inputs[0] if len(inputs) == 1 else inputs)

  specs = []
  (batch,) = jax.export.symbolic_shape("b") if batch_polymorphic else (None,)
  for i, x in enumerate(example_inputs):
    shape = tuple(np.shape(x))
    if batch_polymorphic and not shape:
      raise ExportError(f"input {i} is a scalar: it has no batch dimension to make symbolic; "
                        "pass batch_polymorphic=False")
    shape = (batch, *shape[1:]) if batch_polymorphic else shape
    specs.append(jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(x.dtype)))
  return jax.export.export(jax.jit(apply), platforms=platforms)(*specs)


def save(exported: jax.export.Exported, path: str | os.PathLike) -> str:
  """Writes the serialized program to `path` (atomically: a crash leaves no partial file)."""
  path = os.fspath(path)
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    f.write(exported.serialize())
  os.replace(tmp, path)
  return path


def load(path: str | os.PathLike) -> Callable[..., Any]:
  """The function saved at `path`; needs only `jax` (`jax.export.deserialize(...).call`)."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    exported = jax.export.deserialize(bytearray(data))
  except Exception as error:  # noqa: BLE001 (flatbuffers raises assorted types on bad bytes)
    raise ExportError(f"{os.fspath(path)} is not a serialized jax.export program "
                      f"({type(error).__name__}: {error}); write it with declax.export.save "
                      "or scripts/export.py") from error
  return exported.call
