"""Convolution and pooling over channels-last inputs: `(batch, length, channels)` for 1-D,
NHWC for 2-D (and NDHWC for 3-D), with Trax's argument names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from declax.layers.base import Layer
from declax.layers.core import stored_param_shape
from declax.layers.dtypes import promote_dtype
from declax.layers.partitioning import param_init
from declax.layers.stack import describe

_LAYOUTS = {1: "(batch, length, channels)", 2: "(batch, height, width, channels)",
            3: "(batch, depth, height, width, channels)"}


def _int_tuple(value: Any, what: str, owner: str) -> tuple:
  if isinstance(value, int) or not all(isinstance(v, int) for v in value):
    raise TypeError(f"{owner}: {what} must be a tuple of ints (one per spatial axis, e.g. (3, 3)),"
                    f" got {value!r}")
  return tuple(value)


def _spatial_option(value: Any, n: int, what: str, owner: str) -> tuple:
  """`None` -> ones; an int -> repeated; a sequence -> checked to have `n` entries."""
  if value is None:
    return (1,) * n
  if isinstance(value, int):
    return (value,) * n
  value = _int_tuple(value, what, owner)
  if len(value) != n:
    raise ValueError(f"{owner}: {what}={value} has {len(value)} entries for {n} spatial axes")
  return value


def _padding(padding: Any, n: int) -> Any:
  if isinstance(padding, str):
    return padding.upper()
  if isinstance(padding, int):
    return ((padding, padding),) * n
  return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def _check_rank(x, n: int) -> None:
  layout = _LAYOUTS.get(n, f"(batch, {n} spatial axes, channels)")
  chex.assert_rank(x, n + 2, exception_type=ValueError,
                   custom_message=f"expects inputs of rank {n + 2} {layout} for a "
                   f"{n}-D window, got {describe([x])}")


class Conv(Layer):
  """A convolution over the spatial axes of a channels-last input.

  The kernel has shape `kernel_size + (in_channels, filters)`; its logical axes are
  `kernel_axes`, naming the last two (in, out) axes with the spatial axes left unnamed (or a
  full-length tuple to name every axis; None stores a plain array). `strides`/`kernel_dilation`
  default to 1; `padding` is `'VALID'`, `'SAME'`, an int or `(low, high)` pairs per axis.

  **Returns:** `(batch, *spatial, in_channels) -> (batch, *spatial', filters)`.

  ```python
  conv = tl.Conv(16, (3, 3), padding='SAME')
  variables = conv.init(key, jnp.ones((8, 28, 28, 1)))   # kernel (3, 3, 1, 16)
  tl.Conv(32, (5,))                                       # 1-D: (batch, length, channels)
  ```
  """

  filters: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  padding: str | Sequence = "VALID"
  kernel_dilation: Sequence[int] | None = None
  use_bias: bool = True
  kernel_initializer: Callable = nn.initializers.glorot_uniform()
  bias_initializer: Callable = nn.initializers.normal(stddev=1e-6)
  kernel_axes: Sequence[str | None] | None = ("embed", "mlp")
  bias_axes: Sequence[str | None] | None = ("mlp",)
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None

  def __post_init__(self):
    size = _int_tuple(self.kernel_size, "kernel_size", "Conv")
    object.__setattr__(self, "kernel_size", size)
    for what in ("strides", "kernel_dilation"):
      value = getattr(self, what)
      if value is not None and not isinstance(value, int):
        object.__setattr__(self, what, _spatial_option(value, len(size), what, "Conv"))
    if not isinstance(self.padding, str):
      object.__setattr__(self, "padding", _padding(self.padding, len(size)))
    super().__post_init__()

  def _kernel_axes(self) -> tuple | None:
    if self.kernel_axes is None:
      return None
    axes = tuple(self.kernel_axes)
    rank = len(self.kernel_size) + 2
    return axes if len(axes) == rank else (None,) * (rank - len(axes)) + axes

  def contract(self, x):
    if jnp.ndim(x) < len(self.kernel_size) + 2:  # more leading axes fold into the batch (Trax)
      _check_rank(x, len(self.kernel_size))
    stored = stored_param_shape(self, "kernel")
    if stored is not None:
      chex.assert_axis_dimension(x, -1, stored[-2], exception_type=ValueError,
                                 custom_message=(
          f"input {describe([x])} has {x.shape[-1]} channels, but the kernel has shape {stored} "
          f"(kernel_size + (in_channels={stored[-2]}, filters))"))

  @nn.compact
  def forward(self, x):
    n = len(self.kernel_size)
    lead = x.shape[: max(jnp.ndim(x) - n - 1, 1)]
    if jnp.ndim(x) > n + 2:  # extra leading axes are folded into the batch, as in Trax
      x = jnp.reshape(x, (-1,) + x.shape[len(lead) :])
    kernel_shape = self.kernel_size + (x.shape[-1], self.filters)
    kernel = self.param("kernel", param_init(self.kernel_initializer, self._kernel_axes()),
                        kernel_shape, self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", param_init(self.bias_initializer, self.bias_axes),
                        (self.filters,), self.param_dtype)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    spatial = tuple(range(1, n + 1))
    numbers = lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1) + spatial, rhs_spec=(n + 1, n) + tuple(range(n)),
        out_spec=(0, n + 1) + spatial)
    y = lax.conv_general_dilated(
        x, kernel,
        window_strides=_spatial_option(self.strides, n, "strides", "Conv"),
        padding=_padding(self.padding, n),
        rhs_dilation=_spatial_option(self.kernel_dilation, n, "kernel_dilation", "Conv"),
        dimension_numbers=numbers, precision=self.precision)
    if 0 in y.shape[1 : n + 1]:
      raise ValueError(f"input {describe([x])} is too small for kernel_size={self.kernel_size} "
                       f"with padding {self.padding!r}: the output {describe([y])} is empty")
    y = y if bias is None else y + lax.broadcast_to_rank(bias, y.ndim)
    return jnp.reshape(y, lead + y.shape[1:])


class _Pool(Layer):
  """Shared fields and checks of the pooling layers (Trax's names and defaults)."""

  pool_size: Sequence[int] = (2, 2)
  strides: Sequence[int] | None = None
  padding: str | Sequence = "VALID"

  def __post_init__(self):
    name = type(self).__name__
    size = _int_tuple(self.pool_size, "pool_size", name)
    object.__setattr__(self, "pool_size", size)
    if self.strides is not None:
      object.__setattr__(self, "strides", _spatial_option(self.strides, len(size), "strides", name))
    if not isinstance(self.padding, str):
      object.__setattr__(self, "padding", _padding(self.padding, len(size)))
    super().__post_init__()

  def contract(self, x):
    _check_rank(x, len(self.pool_size))

  def _window(self, x) -> dict:
    return {"window_shape": self.pool_size, "strides": self.strides,
            "padding": _padding(self.padding, len(self.pool_size))}


class MaxPool(_Pool):
  """Maximum over `pool_size` windows of the spatial axes.

  As in Trax (and `flax.linen.max_pool`), `strides=None` means stride 1: pass
  `strides=pool_size` for non-overlapping windows.

  ```python
  tl.MaxPool(pool_size=(2, 2), strides=(2, 2)).apply({}, jnp.ones((1, 4, 4, 3))).shape
  # (1, 2, 2, 3)
  ```
  """

  def forward(self, x):
    return nn.max_pool(x, **self._window(x))


class AvgPool(_Pool):
  """Average over `pool_size` windows of the spatial axes (`strides=None`: stride 1).

  With `'SAME'` padding, Trax's semantics: padded positions are not counted
  (`count_include_pad=False`).

  ```python
  tl.AvgPool(pool_size=(2, 2), strides=(2, 2)).apply({}, jnp.ones((1, 4, 4, 3))).shape
  # (1, 2, 2, 3)
  ```
  """

  count_include_pad: bool = False

  def forward(self, x):
    with jax.numpy_dtype_promotion("standard"):  # Flax divides by float counts (ints: floats)
      return nn.avg_pool(x, count_include_pad=self.count_include_pad, **self._window(x))


class SumPool(_Pool):
  """Sum over `pool_size` windows of the spatial axes (`strides=None`: stride 1)."""

  def forward(self, x):
    return nn.pool(x, 0.0, lax.add, **self._window(x))
