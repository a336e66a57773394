"""`ReversibleSerial`: a serial combinator of reversible layers whose backward pass rebuilds the
activations from the outputs instead of storing them (see `declax.layers.reversible`).

```python
block = [tl.ReversibleHalfResidual(tl.LayerNorm(), tl.Dense(8)), tl.ReversibleSwap()]
model = tl.ReversibleSerial(block, block)          # (x1, x2) -> (y1, y2), 2 in / 2 out
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

from declax.layers.base import Layer, flatten_layers
from declax.layers.reversible import (
  NotReversibleError,
  ReversibleLayer,
  _apply,
  _trax_arguments,
  _zeros_cotangent,
)
from declax.layers.stack import SerialArity

__all__ = ["ReversibleSerial", "with_custom_backward"]


@_trax_arguments
class ReversibleSerial(SerialArity, ReversibleLayer):
  """A `Serial` of reversible layers whose backward pass recomputes activations from outputs.

  Training memory for activations does not grow with the number of layers: the forward pass
  keeps only the final outputs and the backward pass rebuilds each layer's inputs from its
  outputs. Gradients equal ordinary backpropagation (`custom_backward=False` gives the latter, on
  the same random numbers). A sublayer that is not a `ReversibleLayer` raises
  `NotReversibleError` naming it. During `init` and when a `'cache'` is being updated
  (`'predict'` mode) the layers run as a plain `Serial`. Other mutable collections (e.g.
  BatchNorm statistics) are not updated on the reversible path.

  ```python
  rev = tl.ReversibleSerial(tl.ReversibleHalfResidual(tl.Dense(4)), tl.ReversibleSwap())
  variables = rev.init(key, (x1, x2))
  grads = jax.grad(lambda p: rev.apply({'params': p}, (x1, x2))[0].sum())(variables['params'])
  ```
  """

  layers: tuple = ()
  custom_backward: bool = dataclasses.field(default=True, kw_only=True)

  @staticmethod
  def _trax_args(*layers, **fields):
    return {**fields, "layers": tuple(flatten_layers([*layers, *fields.pop("layers", ())]))}

  def __post_init__(self):
    for i, layer in enumerate(self.layers):
      if not isinstance(layer, ReversibleLayer):
        header = layer.header if isinstance(layer, Layer) else type(layer).__name__
        raise NotReversibleError(
            f"ReversibleSerial: sublayer {i} ({header}) is not reversible; use reversible "
            "layers (ReversibleHalfResidual, ReversibleSwap, ReversibleSelect, ...), e.g. wrap "
            f"a residual branch as ReversibleHalfResidual({header}, ...)")
    super().__post_init__()

  # -- per-layer parameters and keys ----------------------------------------------------------

  def _layer_keys(self) -> list[dict]:
    """One key per PRNG stream and sublayer, drawn in a fixed order (also in `reverse_and_grad`)."""
    names = sorted(n for n in self.scope.rngs if n != "params")
    return [{n: self.make_rng(n) for n in names} for _ in self.layers]

  def forward(self, *items):
    if self.is_initializing() or self.is_mutable_collection("cache"):
      stack = list(items)
      for layer in self.layers:
        stack = list(self.call_child(layer, stack[: layer.n_in])) + stack[layer.n_in:]
      return tuple(stack)
    defs = [layer.clone(parent=None, _deep_clone=True) for layer in self.layers]
    params = self.variables.get("params", {})
    layer_params = [params.get(layer.name, {}) for layer in self.layers]
    keys = self._layer_keys()
    run = _reversible_run(tuple(defs)) if self.custom_backward else _forward_fn(tuple(defs))
    return run(layer_params, keys, tuple(items))

  def reverse(self, *outputs):
    raise NotImplementedError("ReversibleSerial reverses through reverse_and_grad")

  @nn.nowrap
  def reverse_and_grad(self, params: Any, rngs: dict, outputs: tuple, cts: tuple):
    defs = tuple(layer.clone(parent=None, _deep_clone=True) for layer in self.layers)
    keys = self.apply({"params": params}, rngs=rngs, method=type(self)._layer_keys)
    names = [f"layers_{i}" for i in range(len(defs))]
    inputs, x_ct, p_cts = _backward(defs, [params.get(n, {}) for n in names], keys, outputs, cts)
    return inputs, x_ct, {n: p for n, p in zip(names, p_cts, strict=True) if n in params}


def _forward_fn(defs: tuple):
  def run(layer_params, keys, items):
    stack = list(items)
    for layer, p, k in zip(defs, layer_params, keys, strict=True):
      stack = list(_apply(layer, p, k, stack[: layer.n_in])) + stack[layer.n_in:]
    return tuple(stack)

  return run


def _backward(defs, layer_params, keys, outputs, cts):
  stack, stack_ct = list(outputs), list(cts)
  p_cts = [None] * len(defs)
  for i in reversed(range(len(defs))):
    layer = defs[i]
    n = layer.n_out
    # A barrier on what the recomputation reads keeps the compiler from merging it with the
    # forward pass (which would keep forward values, e.g. broadcast biases, alive until here).
    params_i, keys_i, outputs_i, cts_i = jax.lax.optimization_barrier(
        (layer_params[i], keys[i], tuple(stack[:n]), tuple(stack_ct[:n])))
    inputs, x_ct, p_cts[i] = layer.reverse_and_grad(params_i, keys_i, outputs_i, cts_i)
    # The barrier makes the next layer's recomputation wait for this layer's gradients, so the
    # compiler cannot rebuild every layer's inputs first and hold all their activations.
    inputs, x_ct, p_cts[i] = jax.lax.optimization_barrier((inputs, x_ct, p_cts[i]))
    stack = list(inputs) + stack[n:]
    stack_ct = list(x_ct) + stack_ct[n:]
  return tuple(stack), tuple(stack_ct), p_cts


def _reversible_run(defs: tuple):
  forward = _forward_fn(defs)

  @jax.custom_vjp
  def run(layer_params, keys, items):
    return forward(layer_params, keys, items)

  def run_fwd(layer_params, keys, items):
    outputs = forward(layer_params, keys, items)
    return outputs, (layer_params, keys, outputs)  # only the outputs are kept, not activations

  def run_bwd(residuals, cts):
    layer_params, keys, outputs = residuals
    _, x_ct, p_cts = _backward(defs, layer_params, keys, outputs, cts)
    key_cts = jax.tree.map(_zeros_cotangent, keys)
    return list(p_cts), key_cts, x_ct

  run.defvjp(run_fwd, run_bwd)
  return run


def with_custom_backward(model: nn.Module, enabled: bool) -> nn.Module:
  """The same layer tree with every `ReversibleSerial`'s `custom_backward` set to `enabled`.

  `enabled=False` gives ordinary backpropagation through the very same computation (same
  parameters, same random numbers), e.g. to compare gradients or memory.

  ```python
  plain = with_custom_backward(model, False)
  ```
  """
  memo: dict[int, nn.Module] = {}

  def convert(value):
    if isinstance(value, (tuple, list)):
      return type(value)(convert(v) for v in value)
    if not isinstance(value, nn.Module):
      return value
    if id(value) not in memo:
      updates = {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)
                 if f.init and f.name not in ("parent", "name")}
      if isinstance(value, ReversibleSerial):
        updates["custom_backward"] = enabled
      memo[id(value)] = value.clone(**updates)
    return memo[id(value)]

  return convert(model)
