"""Reversible layers: layers that can compute their inputs from their outputs (Trax's semantics).

A `ReversibleSerial` of reversible layers does not store its activations for backpropagation:
its custom backward pass (`jax.custom_vjp`) keeps only the final outputs and walks the layers
from last to first, rebuilding each layer's inputs from its outputs and taking that layer's
vector-Jacobian product on the way. Activation memory therefore stays flat in depth (RevNets;
Kitaev et al. 2020, "Reformer: The Efficient Transformer").

```python
import declax.layers as tl
block = [tl.ReversibleHalfResidual(tl.LayerNorm(), tl.Dense(8)), tl.ReversibleSwap()]
model = tl.ReversibleSerial(block, block)          # (x1, x2) -> (y1, y2), 2 in / 2 out
```

Random numbers: every sublayer of a `ReversibleSerial` gets its own key per PRNG stream (drawn
once from the enclosing scope), so the recomputation in the backward pass draws the very same
dropout masks as the forward pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.errors import DeclaxError
from declax.layers.base import Layer, flatten_layers, pack, unpack, unpack_outputs
from declax.layers.combinators import Serial, stack_arity

__all__ = [
    "NotReversibleError", "ReversibleConcatenatePair", "ReversibleHalfResidual", "ReversibleLayer",
    "ReversibleReshape", "ReversibleSelect", "ReversibleSerial", "ReversibleSwap",
    "with_custom_backward",
]


class NotReversibleError(DeclaxError, TypeError):
  """A `ReversibleSerial` was given a layer that cannot run in reverse."""


# ------------------------------------------------------------------------------------------------
# Pure helpers: a layer definition applied to explicit parameters and keys
# ------------------------------------------------------------------------------------------------


def _trax_arguments(cls: type) -> type:
  """Class decorator: the constructor takes Trax's arguments, mapped to dataclass fields by the
  class's `_trax_args` (Linen's `clone()` passes the fields back by keyword, which it accepts)."""
  dataclass_init = cls.__init__

  def __init__(self, *args, **fields):
    dataclass_init(self, **cls._trax_args(*args, **fields))

  __init__.__doc__ = cls.__doc__
  cls.__init__ = __init__
  return cls


def _zeros_cotangent(x: Any) -> Any:
  """The cotangent of a non-differentiable (integer, boolean, key) value."""
  return np.zeros(np.shape(x), jax.dtypes.float0)


def _is_float(x: Any) -> bool:
  return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _apply(layer: Layer, params: Any, rngs: dict, items: Sequence[Any]) -> tuple:
  """`layer`'s outputs (a tuple) on `items`, with explicit parameters and PRNG keys."""
  return unpack_outputs(layer.apply({"params": params}, pack(items), rngs=rngs), layer)


def _vjp_float(fun, params: Any, items: tuple):
  """`jax.vjp` of `fun(params, items)` where integer items are held fixed (float0 cotangents)."""
  mask = tuple(_is_float(x) for x in items)

  def on_floats(p, floats):
    it = iter(floats)
    return fun(p, tuple(next(it) if m else x for x, m in zip(items, mask, strict=True)))

  outputs, vjp = jax.vjp(on_floats, params, tuple(x for x, m in zip(items, mask, strict=True) if m))

  def backward(cts):
    p_ct, float_cts = vjp(cts)
    it = iter(float_cts)
    return p_ct, tuple(next(it) if m else _zeros_cotangent(x)
                       for x, m in zip(items, mask, strict=True))

  return outputs, backward


def _fix_cotangents(outputs: tuple, cts: tuple) -> tuple:
  """Cotangents in the dtypes `jax.vjp` expects (float0 for integer outputs)."""
  return tuple(ct if _is_float(y) else _zeros_cotangent(y)
               for y, ct in zip(outputs, cts, strict=True))


# ------------------------------------------------------------------------------------------------
# Base class
# ------------------------------------------------------------------------------------------------


class ReversibleLayer(Layer):
  """A layer that can compute its inputs from its outputs (`reverse`).

  Subclasses implement `forward` and `reverse(*outputs) -> inputs`; the default
  `reverse_and_grad` rebuilds the inputs and takes the forward pass's vector-Jacobian product
  there. Layers that can share work between the two (`ReversibleHalfResidual`) override it.

  ```python
  class Double(tl.ReversibleLayer):
    def forward(self, x):
      return 2 * x
    def reverse(self, y):
      return y / 2
  ```
  """

  def reverse(self, *outputs):
    raise NotImplementedError(f"{type(self).__name__} must implement reverse(self, *outputs)")

  @nn.nowrap
  def reverse_and_grad(self, params: Any, rngs: dict, outputs: tuple, cts: tuple):
    """`(inputs, input_cotangents, param_cotangents)` from outputs and their cotangents.

    Called on an unbound layer with its own parameters and keys (as in the forward pass).
    """
    inputs = unpack(self.apply({"params": params}, *outputs, rngs=rngs, method=type(self).reverse))
    _, backward = _vjp_float(lambda p, xs: _apply(self, p, rngs, xs), params, inputs)
    p_ct, x_ct = backward(_fix_cotangents(outputs, cts))
    return inputs, x_ct, p_ct


# ------------------------------------------------------------------------------------------------
# Parameter-free reversible layers
# ------------------------------------------------------------------------------------------------


@_trax_arguments
class ReversibleSelect(ReversibleLayer):
  """`Select` that is a permutation of its inputs, so it can run backwards.

  Every input index must appear in `indices` (else ValueError).

  ```python
  tl.ReversibleSelect([1, 0])   # same as ReversibleSwap()
  ```
  """

  indices: Sequence[int] = (0,)
  select_n_in: int | None = None

  @staticmethod
  def _trax_args(indices=(0,), n_in=None, **fields):
    return {"indices": tuple(fields.pop("indices", indices)),
            "select_n_in": fields.pop("select_n_in", n_in), **fields}

  def __post_init__(self):
    missing = [i for i in range(self.n_in) if i not in self.indices]
    if missing:
      raise ValueError(f"ReversibleSelect{list(self.indices)}: to be reversible every input must "
                       f"be selected; input(s) {missing} are missing from indices")
    super().__post_init__()

  @property
  def n_in(self) -> int:
    return max(self.indices) + 1 if self.select_n_in is None else self.select_n_in

  @property
  def n_out(self) -> int:
    return len(self.indices)

  @property
  def default_label(self) -> str:
    return f"ReversibleSelect{list(self.indices)}".replace(" ", "")

  def forward(self, *items):
    return tuple(items[i] for i in self.indices)

  def reverse(self, *outputs):
    return tuple(outputs[list(self.indices).index(i)] for i in range(self.n_in))


@_trax_arguments
class ReversibleSwap(ReversibleSelect):
  """Swaps the top two stack items: `(x, y) -> (y, x)`; its own inverse.

  ```python
  tl.ReversibleSwap()((x, y))   # (y, x)
  ```
  """

  indices: Sequence[int] = (1, 0)

  @staticmethod
  def _trax_args(**fields):
    return {"indices": (1, 0), **{k: v for k, v in fields.items() if k != "indices"}}

  @property
  def default_label(self) -> str:
    return "ReversibleSwap"


@_trax_arguments
class ReversibleReshape(ReversibleLayer):
  """Reshapes the leading axes of each of `n_in` items from `shape1` to `shape2` (and back).

  ```python
  tl.ReversibleReshape((2, 6), (2, 3, 2))   # f32[2,6,5] -> f32[2,3,2,5]
  ```
  """

  shape1: Sequence[int] = ()
  shape2: Sequence[int] = ()
  reshape_n_in: int = 1

  @staticmethod
  def _trax_args(shape1=(), shape2=(), n_in=1, **fields):
    return {"shape1": tuple(fields.pop("shape1", shape1)),
            "shape2": tuple(fields.pop("shape2", shape2)),
            "reshape_n_in": fields.pop("reshape_n_in", n_in), **fields}

  @property
  def n_in(self) -> int:
    return self.reshape_n_in

  @property
  def n_out(self) -> int:
    return self.reshape_n_in

  @property
  def default_label(self) -> str:
    return f"ReversibleReshape_{list(self.shape1)}_{list(self.shape2)}"

  def forward(self, *items):
    return tuple(jnp.reshape(x, tuple(self.shape2) + x.shape[len(self.shape1):]) for x in items)

  def reverse(self, *outputs):
    return tuple(jnp.reshape(y, tuple(self.shape1) + y.shape[len(self.shape2):]) for y in outputs)


class ReversibleConcatenatePair(ReversibleLayer):
  """`(x, y) -> ([x, y], [x, y])`, concatenating on the last axis; reversed by splitting.

  ```python
  tl.ReversibleConcatenatePair()((x, y))   # two copies of concatenate([x, y], -1)
  ```
  """

  @property
  def n_in(self) -> int:
    return 2

  @property
  def n_out(self) -> int:
    return 2

  def forward(self, x, y):
    pair = jnp.concatenate([x, y], axis=-1)
    return pair, pair

  def reverse(self, pair, _):
    x, y = jnp.split(pair, 2, axis=-1)
    return x, y


# ------------------------------------------------------------------------------------------------
# Half residual
# ------------------------------------------------------------------------------------------------


@_trax_arguments
class ReversibleHalfResidual(ReversibleLayer):
  """Half of a RevNet residual: `(acc, *context) -> (acc + f(context), *context)`.

  `f` is `Serial(*residual_layers)` followed by `attention_layer` (if given) on the context
  items. Its inverse subtracts the same `f(context)`, so the backward pass computes `f` once,
  with its vector-Jacobian product. `n_in == n_out` is one more than `f` needs.

  ```python
  half = tl.ReversibleHalfResidual(tl.LayerNorm(), tl.Dense(8))          # (acc, x) -> 2 items
  attn = tl.ReversibleHalfResidual(tl.LayerNorm(), attention_layer=tl.CausalAttention(8))
  ```
  """

  compute_residual: Layer | None = None
  attention_layer: Layer | None = None

  @staticmethod
  def _trax_args(*residual_layers, attention_layer=None, **fields):
    if "compute_residual" not in fields:
      fields["compute_residual"] = Serial(*residual_layers)
    return {"attention_layer": attention_layer, **fields}

  def _f_layers(self) -> tuple:
    return tuple(x for x in (self.compute_residual, self.attention_layer) if x is not None)

  @property
  def n_in(self) -> int:
    return stack_arity(self._f_layers())[0] + 1

  @property
  def n_out(self) -> int:
    return self.n_in

  def residual(self, *context):
    """`f(context)`: the residual branch's first output."""
    stack = list(context)
    for layer in self._f_layers():
      stack = list(self.call_child(layer, stack[: layer.n_in])) + stack[layer.n_in:]
    return stack[0]

  def forward(self, accumulator, *context):
    return (accumulator + self.residual(*context),) + context

  def reverse(self, accumulator, *context):
    return (accumulator - self.residual(*context),) + context

  @nn.nowrap
  def reverse_and_grad(self, params: Any, rngs: dict, outputs: tuple, cts: tuple):
    accumulator, *context = outputs
    acc_ct, *context_ct = _fix_cotangents(outputs, cts)

    def f(p, ctx):
      return self.apply({"params": p}, *ctx, rngs=rngs, method=type(self).residual)

    residual, backward = _vjp_float(f, params, tuple(context))
    p_ct, f_ct = backward(acc_ct)
    context_ct = tuple(a if b.dtype == jax.dtypes.float0 else a + b
                       for a, b in zip(context_ct, f_ct, strict=True))
    return (accumulator - residual,) + tuple(context), (acc_ct,) + context_ct, p_ct


# ------------------------------------------------------------------------------------------------
# Serial
# ------------------------------------------------------------------------------------------------


@_trax_arguments
class ReversibleSerial(ReversibleLayer):
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

  @property
  def n_in(self) -> int:
    return stack_arity(self.layers)[0] if self.layers else 1

  @property
  def n_out(self) -> int:
    return stack_arity(self.layers)[1] if self.layers else 1

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
