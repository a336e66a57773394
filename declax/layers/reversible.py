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

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.errors import DeclaxError
from declax.layers.base import Layer, pack, unpack, unpack_outputs
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


# The serial combinator and its backward pass (they need `ReversibleLayer`, hence imported last).
from declax.layers.reversible_serial import ReversibleSerial, with_custom_backward  # noqa: E402
