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


def _as_outputs(y: Any) -> list:
  return list(y) if isinstance(y, (tuple, list)) else [y]


def check_eval_is_deterministic(inp: Any, model_fn, message: str = "") -> None:
  """Trax's `test_utils.test_eval_is_deterministic`: two eval models, one set of weights."""
  model_eval1, model_eval2 = model_fn(mode="eval"), model_fn(mode="eval")
  variables = model_eval1.init(KEY, inp)  # Trax saves these and loads them into model 2
  out1 = _as_outputs(model_eval1.apply(variables, inp))
  out2 = _as_outputs(model_eval2.apply(variables, inp))
  np.testing.assert_equal(len(out1), len(out2))
  for a, b in zip(out1, out2, strict=True):
    np.testing.assert_array_almost_equal(a, b, decimal=5, err_msg=f"Non-deterministic.{message}")


def check_eval_equals_predict(inp: Any, model_fn, seq_axis: int = 1, seq_tensor: int | None = None,
                              init_tokens: int = 3, message: str = "") -> None:
  """Trax's `test_utils.test_eval_equals_predict`: predict mode fed piece by piece (first
  `init_tokens`, then one at a time) gives the eval outputs."""
  model_eval, model_predict = model_fn(mode="eval"), model_fn(mode="predict")
  variables = model_eval.init(KEY, inp)
  output_eval = _as_outputs(model_eval.apply(variables, inp))
  sequence = inp if seq_tensor is None else inp[seq_tensor]
  length = sequence.shape[seq_axis]
  assert length >= init_tokens + 2

  def piece(start, end):
    if seq_tensor is None:
      return inp.take(indices=np.arange(start, end), axis=seq_axis)
    new_inp = list(inp)
    new_inp[seq_tensor] = new_inp[seq_tensor].take(indices=np.arange(start, end), axis=seq_axis)
    return tuple(new_inp)

  cache = {k: v for k, v in model_predict.init(KEY, piece(0, init_tokens)).items()
           if k != "params"}
  pieces = [(0, init_tokens)] + [(i, i + 1) for i in range(init_tokens, length)]
  for start, end in pieces:
    output, cache = model_predict.apply({"params": variables["params"], **cache},
                                        piece(start, end), mutable=list(cache))
    output = _as_outputs(output)
    np.testing.assert_equal(len(output), len(output_eval))
    for outp, oute in zip(output, output_eval, strict=True):
      np.testing.assert_array_almost_equal(
          np.asarray(oute).take(indices=np.arange(start, end), axis=seq_axis),
          np.asarray(outp).take(indices=np.arange(0, end - start), axis=seq_axis), decimal=5,
          err_msg=f"Error on element {(start, end)} out of {length}.{message}")
