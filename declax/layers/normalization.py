"""Normalization layers: `LayerNorm` and `BatchNorm` (Trax's arguments, Flax's variable names).

Statistics are always computed in float32 (or wider), whatever the input dtype; the result is
cast to `dtype` (None: the promotion of the input and float32 parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from declax.layers.base import Layer
from declax.layers.core import stored_param_shape
from declax.layers.dtypes import at_least_float32, result_dtype
from declax.layers.partitioning import param_init
from declax.layers.stack import describe


def _fit_axes(names: Sequence[str | None] | None, rank: int) -> tuple | None:
  """Logical names for a parameter of `rank` axes: the names apply to its trailing axes."""
  if names is None:
    return None
  names = tuple(names)[-rank:] if rank else ()
  return (None,) * (rank - len(names)) + names


def _stats_dtype(x) -> Any:
  return at_least_float32(x)


class LayerNorm(Layer):
  """Normalises the last axis to zero mean and unit variance, then scales and shifts it.

  `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, with learned `scale` (ones) and `bias`
  (zeros) of shape `(d,)` and logical axes `param_axes` (default `('embed',)`). `center=False`
  drops the bias, `scale=False` the scale.

  ```python
  layer = tl.LayerNorm()
  variables = layer.init(key, jnp.ones((2, 8)))   # params: {'scale': (8,), 'bias': (8,)}
  ```
  """

  epsilon: float = 1e-6
  center: bool = True
  scale: bool = True
  param_axes: Sequence[str | None] | None = ("embed",)
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def contract(self, x):
    chex.assert_shape(x, (..., None), exception_type=ValueError,
                      custom_message=f"expects inputs of shape (..., d), got a scalar "
                      f"{describe([x])}")
    for name in ("scale", "bias"):
      stored = stored_param_shape(self, name)
      if stored is not None:
        chex.assert_axis_dimension(x, -1, stored[0], exception_type=ValueError,
                                   custom_message=(
            f"input {describe([x])} has {x.shape[-1]} features on its last axis, but the "
            f"'{name}' parameter has shape {stored}"))

  @nn.compact
  def forward(self, x):
    d = x.shape[-1]
    params = _affine_params(self, (d,), self.param_axes)
    xf = x.astype(_stats_dtype(x))
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    return _normalize(self, x, xf - mean, var, *params)


def _affine_params(layer: Layer, shape: tuple, axes: Sequence[str | None] | None) -> tuple:
  axes = _fit_axes(axes, len(shape))
  scale = bias = None
  if layer.scale:
    scale = layer.param("scale", param_init(nn.initializers.ones, axes), shape, layer.param_dtype)
  if layer.center:
    bias = layer.param("bias", param_init(nn.initializers.zeros, axes), shape, layer.param_dtype)
  return scale, bias


def _normalize(layer: Layer, x, centered, var, scale, bias, broadcast=None):
  """`centered * rsqrt(var + eps) * scale + bias`, in float32, cast to the output dtype."""
  out_dtype = result_dtype(x, scale, bias, dtype=layer.dtype)
  if broadcast is None:  # parameters of the last axis, to the rank of x (no implicit promotion)
    broadcast = lambda p: lax.broadcast_to_rank(p, centered.ndim)
  multiplier = lax.rsqrt(var + layer.epsilon)
  if scale is not None:
    multiplier = multiplier * broadcast(scale)
  y = centered * multiplier
  if bias is not None:
    y = y + broadcast(bias)
  return y.astype(out_dtype)


class BatchNorm(Layer):
  """Normalises over the batch (and other) axes `axis`, Trax's way: `axis=(0, 1, 2)` for NHWC.

  Parameters `scale`/`bias` and statistics have the shape of the axes *not* in `axis` (e.g.
  `(C,)` for NHWC); `param_axes` name their trailing axes (default `('embed',)`). In `'train'`
  mode the batch statistics are used, and the running ones in the `'batch_stats'` collection
  (`mean`, zeros; `var`, ones) become `momentum * running + (1 - momentum) * batch`, and Trax's
  counter `n_batches` (int32) grows by one, when that collection is mutable (never during
  `init`). In `'eval'`/`'predict'` mode the running statistics are used.

  ```python
  model = tl.Serial(tl.Conv(8, (3, 3)), tl.BatchNorm(), tl.Relu())
  variables = model.init(key, images)               # {'params': ..., 'batch_stats': ...}
  y, updates = model.apply(variables, images, mutable=['batch_stats'])
  tl.with_mode(model, 'eval').apply({**variables, **updates}, images)
  ```
  """

  axis: Sequence[int] = (0, 1, 2)
  epsilon: float = 1e-5
  center: bool = True
  scale: bool = True
  momentum: float = 0.999
  mode: str = "train"
  param_axes: Sequence[str | None] | None = ("embed",)
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
    object.__setattr__(self, "axis", axis)
    if not axis or len(set(axis)) != len(axis):
      raise ValueError(f"BatchNorm: axis must be distinct axes to normalise over, got {axis}")
    super().__post_init__()

  def contract(self, x):
    min_rank = max(a + 1 if a >= 0 else -a for a in self.axis)
    chex.assert_shape(x, (...,) + (None,) * min_rank, exception_type=ValueError, custom_message=(
        f"BatchNorm(axis={self.axis}) normalises over axes that an input of rank {jnp.ndim(x)} "
        f"({describe([x])}) does not have"))
    reduced = tuple(sorted(a % jnp.ndim(x) for a in self.axis))
    chex.assert_equal(len(set(reduced)), len(reduced), exception_type=ValueError, custom_message=(
        f"BatchNorm: axis={self.axis} names the same axis twice for rank {jnp.ndim(x)}"))
    kept = tuple(d for i, d in enumerate(x.shape) if i not in reduced)
    for name in ("scale", "bias"):
      stored = stored_param_shape(self, name)
      if stored is not None:
        chex.assert_equal(stored, kept, exception_type=ValueError, custom_message=(
            f"input {describe([x])} normalised over axes {reduced} leaves features of shape "
            f"{kept}, but '{name}' has shape {stored}"))

  @nn.compact
  def forward(self, x):
    reduced = tuple(sorted(a % x.ndim for a in self.axis))
    kept = tuple(d for i, d in enumerate(x.shape) if i not in reduced)
    params = _affine_params(self, kept, self.param_axes)
    stats_dtype = jnp.float32
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, kept, stats_dtype)
    running_var = self.variable("batch_stats", "var", jnp.ones, kept, stats_dtype)
    # Trax's third state entry: how many training batches have updated the statistics (absent
    # from variables made before it existed: those still apply, read-only).
    n_batches = None
    if self.has_variable("batch_stats", "n_batches") or self.is_mutable_collection("batch_stats"):
      n_batches = self.variable("batch_stats", "n_batches", lambda: jnp.zeros((), jnp.int32))
    chex.assert_shape(running_mean.value, kept, exception_type=ValueError, custom_message=(
        f"input {describe([x])} leaves features of shape {kept}, but the running statistics "
        f"have shape {running_mean.value.shape}"))

    def broadcast(value):  # (kept...) -> rank of x, with 1s on the reduced axes
      return jnp.expand_dims(value, reduced)

    xf = x.astype(_stats_dtype(x))
    if self.mode == "train":
      mean = jnp.mean(xf, axis=reduced)
      var = jnp.mean(jnp.square(xf - broadcast(mean)), axis=reduced)
      if self.is_mutable_collection("batch_stats") and not self.is_initializing():
        m = self.momentum
        running_mean.value = m * running_mean.value + (1.0 - m) * mean.astype(stats_dtype)
        running_var.value = m * running_var.value + (1.0 - m) * var.astype(stats_dtype)
        if n_batches is not None:
          n_batches.value = n_batches.value + 1
    else:
      mean, var = running_mean.value, running_var.value
    return _normalize(self, x, xf - broadcast(mean), broadcast(var), *params, broadcast=broadcast)
