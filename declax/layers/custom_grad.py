"""Custom backward passes: Trax's `has_backward` / `backward` on a declax layer.

A layer that sets `has_backward` (a class attribute or property that is True) and defines
`backward(self, inputs, output, grad, weights, state, new_state, rng)` is differentiated with that
backward pass instead of JAX's (through `flax.linen.custom_vjp`). As in Trax, `inputs`, `output`
and `grad` are packaged like the stack (a bare array for one item, a tuple for several),
`weights` is the layer's own `params` collection, and `backward` returns `(inputs_grad,
weights_grad)`; an empty `weights_grad` (`()`, `{}` or None) means zero gradients for the weights.
`rng` is None: a Linen layer draws its randomness in `forward`.

```python
class IdWithZeroGrad(tl.Layer):
  has_backward = True

  def forward(self, x):
    return x

  def backward(self, inputs, output, grad, weights, state, new_state, rng):
    return jnp.zeros_like(grad), ()

jax.grad(lambda x: IdWithZeroGrad().apply({}, x).sum())(jnp.ones(3))   # [0., 0., 0.]
```
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.layers.errors import LayerArgumentError


def has_custom_backward(layer: nn.Module) -> bool:
  """True if `layer` asks for its own backward pass (Trax's `has_backward`)."""
  return bool(getattr(layer, "has_backward", False))


def run_forward(layer: nn.Module, inputs: tuple) -> Any:
  """`layer.forward(*inputs)`, differentiated by `layer.backward` when the layer defines one.

  `init` runs the plain forward pass (no gradient is taken there, and the parameters that the
  backward pass receives do not exist yet).
  """
  if not has_custom_backward(layer) or layer.is_initializing():
    return layer.forward(*inputs)
  return _forward_with_backward(layer, inputs)


def _zero_cotangent(x: Any) -> Any:
  if jnp.issubdtype(jnp.result_type(x), jnp.inexact):
    return jnp.zeros_like(x)
  return np.zeros(np.shape(x), jax.dtypes.float0)  # integer inputs have no gradient


def _input_cotangents(inputs_grad: Any, xs: tuple, header: str) -> tuple:
  grads = (inputs_grad,) if len(xs) == 1 else tuple(inputs_grad)
  if len(grads) != len(xs):
    raise LayerArgumentError(f"{header}.backward returned {len(grads)} input gradient(s) for "
                             f"{len(xs)} input(s); return one per input, packaged like the "
                             "inputs (a bare array for one)")
  out = []
  for grad, x in zip(grads, xs, strict=True):
    if grad is None or not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
      out.append(_zero_cotangent(x))
    else:
      out.append(jnp.broadcast_to(jnp.asarray(grad, jnp.result_type(x)), jnp.shape(x)))
  return tuple(out)


def _forward_with_backward(layer: nn.Module, inputs: tuple) -> Any:
  state = {name: value for name, value in layer.variables.items() if name != "params"}
  # Flax wraps module methods to manage scopes; the backward pass runs outside any scope, so it
  # calls the user's function itself.
  backward = type(layer).backward
  backward = getattr(backward, "__wrapped__", backward)

  def fn(module, *xs):
    return module.forward(*xs)

  def fwd(module, *xs):
    output = module.forward(*xs)
    return output, (xs, output, module.variables.get("params", None))

  def bwd(residuals, grad):
    xs, output, params = residuals
    if params is None:  # a layer without weights: its weight cotangent is an empty tree
      params, wrap = {}, lambda grads: {}
    else:
      wrap = lambda grads: {"params": grads}  # noqa: E731
    packed = xs[0] if len(xs) == 1 else xs
    inputs_grad, weights_grad = backward(layer, packed, output, grad, params, state, state, None)
    if weights_grad is None or (isinstance(weights_grad, (tuple, list, dict))
                                and not jax.tree.leaves(weights_grad)):
      weights_grad = jax.tree.map(jnp.zeros_like, params)
    return (wrap(weights_grad), *_input_cotangents(inputs_grad, xs, layer.header))

  return nn.custom_vjp(fn, forward_fn=fwd, backward_fn=bwd)(layer, *inputs)
