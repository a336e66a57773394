"""What Trax's tests do with a layer object, done the Linen way, for the translated tests.

Trax's `layer.init(signature)` + `layer(x)` becomes `init_apply(layer, x)`; `layer.weights` /
`layer.state` become the `params` / other collections of the Linen variables.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np
import pytest

KEY = jax.random.PRNGKey(0)
RNGS = {"dropout": jax.random.PRNGKey(1), "random": jax.random.PRNGKey(2)}


def signature(x: Any) -> Any:
  """Trax's `shapes.signature(x)`: `jax.ShapeDtypeStruct`s with the stack's structure."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), x)


def init(layer: nn.Module, x: Any) -> dict:
  """Trax's `layer.init(shapes.signature(x))`: the layer's Linen variables."""
  return layer.init(KEY, x)


def init_apply(layer: nn.Module, x: Any, *, mutable: Any = False,
               variables: dict | None = None) -> Any:
  """Trax's `layer.init(...)` then `layer(x)`."""
  variables = layer.init(KEY, x) if variables is None else variables
  return layer.apply(variables, x, rngs=RNGS, mutable=mutable)


def weights(variables: dict) -> dict:
  """Trax's `layer.weights`: the `params` collection, unboxed."""
  return nn.unbox(variables.get("params", {}))


def as_list(outputs: Any) -> Any:
  if isinstance(outputs, (list, tuple)):
    return [as_list(y) for y in outputs]
  return np.asarray(outputs).tolist()


def not_applicable(reason: str):
  """Skips a Trax test that cannot apply to a Linen design (listed in NOT_APPLICABLE.md)."""
  pytest.skip(f"not applicable to declax: {reason}")
