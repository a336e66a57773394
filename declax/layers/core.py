"""Core layers: `Dense`, `Embedding`, `Dropout`, reshapes and reductions. (`ShiftRight` and
`PositionalEncoding`, the layers that place tokens in a sequence, are in `declax.layers.sequence`.)

Parameterised layers create their weights directly at their own scope (`{'kernel', 'bias'}` for
`Dense`, `{'embedding'}` for `Embedding`), carry logical axis names for sharding, and compute in
`dtype` (None: the promotion of inputs and float32 parameters) while storing `param_dtype`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from declax.layers.base import Layer
from declax.layers.combinators import Fn
from declax.layers.dtypes import promote_dtype
from declax.layers.partitioning import param_init
from declax.layers.stack import describe


def stored_param_shape(module: nn.Module, name: str) -> tuple | None:
  """The shape of parameter `name` if it already exists (during `apply`), else None.

  Layers compare it with their input before calling `self.param`, so a mismatch is reported in
  terms of the input (`Dense_4 got f32[2,5] ... kernel f32[3,4]`) instead of Flax's generic
  initializer-shape error.
  """
  if not module.has_variable("params", name):
    return None
  return tuple(np.shape(nn.unbox(module.get_variable("params", name))))


# ---- Dense and Embedding -------------------------------------------------------------------------


class Dense(Layer):
  """A fully connected layer: `y = x @ kernel + bias` over the last axis.

  **Arguments:** `n_units` (output width), `use_bias`, `kernel_initializer` (Glorot uniform, as
  in Trax), `bias_initializer` (normal with stddev 1e-6, as in Trax), `kernel_axes` /
  `bias_axes` (logical axis names; None stores plain arrays), `dtype` (compute dtype),
  `param_dtype`, `precision`.

  **Returns:** `(..., d_in) -> (..., n_units)`; the kernel has shape `(d_in, n_units)`.

  ```python
  layer = tl.Dense(4)                      # prints as Dense_4
  variables = layer.init(key, jnp.ones((2, 3)))
  layer.apply(variables, jnp.ones((2, 3))).shape   # (2, 4)
  ```
  """

  n_units: int
  use_bias: bool = True
  kernel_initializer: Callable = nn.initializers.glorot_uniform()
  bias_initializer: Callable = nn.initializers.normal(stddev=1e-6)
  kernel_axes: Sequence[str | None] | None = ("embed", "mlp")
  bias_axes: Sequence[str | None] | None = ("mlp",)
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None

  @property
  def default_label(self) -> str:
    return f"Dense_{self.n_units}"

  def contract(self, x):
    chex.assert_shape(x, (..., None), exception_type=ValueError,
                      custom_message=f"expects inputs of shape (..., d_in), got a scalar "
                      f"{describe([x])}")
    stored = stored_param_shape(self, "kernel")
    if stored is not None:
      kernel = describe([jax.ShapeDtypeStruct(stored, self.param_dtype)])
      chex.assert_axis_dimension(x, -1, stored[0], exception_type=ValueError, custom_message=(
          f"input {describe([x])} has {x.shape[-1]} features on its last axis, but the kernel is "
          f"{kernel} (inputs (..., {stored[0]}))"))

  @nn.compact
  def forward(self, x):
    d_in = x.shape[-1]
    kernel = self.param("kernel", param_init(self.kernel_initializer, self.kernel_axes),
                        (d_in, self.n_units), self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", param_init(self.bias_initializer, self.bias_axes),
                        (self.n_units,), self.param_dtype)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=self.precision)
    return y if bias is None else y + lax.broadcast_to_rank(bias, y.ndim)


_OUT_OF_RANGE = ("clip", "fill", "raise")


class Embedding(Layer):
  """Maps integer ids to learned vectors: `(...) int -> (..., d_feature)`.

  Ids must have an integer dtype (float ids are a TypeError). Ids outside `[0, vocab_size)` are
  handled by `out_of_range`:

  - `'clip'` (default, Trax's behaviour): negative ids read row 0, ids `>= vocab_size` read the
    last row.
  - `'fill'`: out-of-range ids give rows of NaN, so the loss turns non-finite and the training
    loop's NaN check names the step (works under `jit`).
  - `'raise'`: concrete (non-traced) ids outside the range raise a ValueError naming the first
    bad id; traced ids (under `jit`) cannot be inspected and behave as `'fill'`.

  The table has shape `(vocab_size, d_feature)`, logical axes `('vocab', 'embed')`, and is
  initialised like Trax's (uniform, variance `1 / d_feature`).

  ```python
  layer = tl.Embedding(vocab_size=10, d_feature=4)   # prints as Embedding_10_4
  variables = layer.init(key, jnp.array([1, 2]))
  layer.apply(variables, jnp.array([[1, 2, 3]])).shape   # (1, 3, 4)
  ```
  """

  vocab_size: int
  d_feature: int
  kernel_initializer: Callable = nn.initializers.variance_scaling(
      1.0, "fan_out", "uniform", in_axis=-2, out_axis=-1)
  kernel_axes: Sequence[str | None] | None = ("vocab", "embed")
  out_of_range: str = "clip"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    if self.out_of_range not in _OUT_OF_RANGE:
      raise ValueError(f"Embedding: out_of_range must be one of {_OUT_OF_RANGE}, "
                       f"got {self.out_of_range!r}")
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return f"Embedding_{self.vocab_size}_{self.d_feature}"

  def contract(self, ids):
    chex.assert_type(ids, int, exception_type=TypeError, custom_message=(
        f"ids must have an integer dtype, got {describe([ids])}; cast them with "
        "ids.astype(jnp.int32)"))

  @nn.compact
  def forward(self, ids):
    table = self.param("embedding", param_init(self.kernel_initializer, self.kernel_axes),
                       (self.vocab_size, self.d_feature), self.param_dtype)
    (table,) = promote_dtype(table, dtype=self.dtype)
    in_range = (ids >= 0) & (ids < self.vocab_size)
    if self.out_of_range == "raise" and not isinstance(ids, jax.core.Tracer):
      bad = np.asarray(ids)[~np.asarray(in_range)]
      if bad.size:
        raise ValueError(f"{bad.size} id(s) outside [0, {self.vocab_size}), e.g. {bad[0]}")
    rows = jnp.take(table, ids, axis=0, mode="clip")  # negative ids clip to 0, no wrapping
    if self.out_of_range == "clip":
      return rows
    return jnp.where(in_range[..., None], rows, jnp.nan)


# ---- Dropout -------------------------------------------------------------------------------------


class Dropout(Layer):
  """Zeroes each activation with probability `rate` in `'train'` mode, scaling the kept ones
  by `1 / (1 - rate)`; the identity in `'eval'` and `'predict'` modes.

  `shared_axes` lists axes along which one mask value is shared (broadcast). Needs a `'dropout'`
  PRNG stream in train mode: `apply(..., rngs={'dropout': key})`.

  ```python
  layer = tl.Dropout(rate=0.1)
  y = layer.apply({}, x, rngs={'dropout': jax.random.PRNGKey(1)})
  tl.Dropout(0.1, mode='eval').apply({}, x)   # x unchanged
  ```
  """

  rate: float = 0.0
  shared_axes: Sequence[int] = ()
  mode: str = "train"

  def __post_init__(self):
    if not 0.0 <= self.rate <= 1.0:
      raise ValueError(f"Dropout: rate must be in [0, 1], got {self.rate}")
    object.__setattr__(self, "shared_axes", tuple(self.shared_axes or ()))
    super().__post_init__()

  def forward(self, x):
    return apply_dropout(self, x, self.rate, self.shared_axes, self.mode)


def apply_dropout(module: nn.Module, x: jax.Array, rate: float, shared_axes: Sequence[int] = (),
            mode: str = "train") -> jax.Array:
  """Inverted dropout of `x` inside `module` (uses its `'dropout'` PRNG stream)."""
  if mode != "train" or rate == 0.0:
    return x
  if rate == 1.0:
    return jnp.zeros_like(x)
  keep_prob = 1.0 - rate
  mask_shape = list(x.shape)
  for axis in shared_axes:
    mask_shape[axis] = 1
  keep = jax.random.bernoulli(module.make_rng("dropout"), keep_prob, mask_shape)
  keep = jnp.broadcast_to(keep, x.shape)
  return lax.select(keep, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros_like(x))


# ---- Reshapes and reductions ---------------------------------------------------------------------


class Flatten(Layer):
  """Collapses all axes after the first `n_axes_to_keep` into one (prints as `Flatten_keep1`).

  ```python
  tl.Flatten().apply({}, jnp.ones((2, 3, 5))).shape                  # (2, 15)
  tl.Flatten(n_axes_to_keep=2).apply({}, jnp.ones((2, 3, 5, 7))).shape  # (2, 3, 35)
  ```
  """

  n_axes_to_keep: int = 1

  @property
  def default_label(self) -> str:
    return f"Flatten_keep{self.n_axes_to_keep}"

  def contract(self, x):
    chex.assert_shape(x, (None,) * (self.n_axes_to_keep + 1) + (...,), exception_type=ValueError,
                      custom_message=f"input rank ({jnp.ndim(x)}, {describe([x])}) must exceed "
                      f"the number of axes to keep ({self.n_axes_to_keep})")

  def forward(self, x):
    return jnp.reshape(x, x.shape[: self.n_axes_to_keep] + (-1,))


def _axis(axis: int | Sequence[int] | None) -> int | tuple | None:
  return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def Mean(axis: int | Sequence[int] | None = -1, keepdims: bool = False, **kwargs) -> Fn:
  """Mean along `axis` (default -1): `tl.Mean().apply({}, jnp.ones((2, 3)))` -> shape (2,)."""
  return Fn("Mean", lambda x: jnp.mean(x, axis=_axis(axis), keepdims=keepdims), **kwargs)


def Sum(axis: int | Sequence[int] | None = None, keepdims: bool = False, **kwargs) -> Fn:
  """Sum along `axis` (default None: every axis, as in Trax): `tl.Sum(axis=0)`."""
  return Fn("Sum", lambda x: jnp.sum(x, axis=_axis(axis), keepdims=keepdims), **kwargs)


def Max(axis: int | Sequence[int] | None = -1, keepdims: bool = False, **kwargs) -> Fn:
  """Maximum along `axis` (default -1): `tl.Max(keepdims=True)`."""
  return Fn("Max", lambda x: jnp.max(x, axis=_axis(axis), keepdims=keepdims), **kwargs)


def Min(axis: int | Sequence[int] | None = -1, keepdims: bool = False, **kwargs) -> Fn:
  """Minimum along `axis` (default -1): `tl.Min()`."""
  return Fn("Min", lambda x: jnp.min(x, axis=_axis(axis), keepdims=keepdims), **kwargs)


def Negate(**kwargs) -> Fn:
  """Element-wise negation: `x -> -x`."""
  return Fn("Negate", lambda x: -x, **kwargs)


def StopGradient(**kwargs) -> Fn:
  """The identity whose gradient is zero: `tl.StopGradient()`."""
  return Fn("StopGradient", lax.stop_gradient, **kwargs)


def ToFloat(**kwargs) -> Fn:
  """Casts the input to float32: `tl.ToFloat()`."""
  return Fn("ToFloat", lambda x: jnp.asarray(x, jnp.float32), **kwargs)


class ArgMax(Layer):
  """Index of the largest value along `axis` (int32): `tl.ArgMax()` on logits gives classes."""

  axis: int = -1

  def forward(self, x):
    return jnp.argmax(x, axis=self.axis)
