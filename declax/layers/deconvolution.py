"""`ConvTranspose`: Trax's transposed (fractionally strided) convolution on NHWC inputs.

```python
tl.ConvTranspose(30, (3, 3))   # (9, 5, 5, 20) -> (9, 7, 7, 30)
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from declax.layers.base import Layer, describe
from declax.layers.dtypes import promote_dtype


class ConvTranspose(Layer):
  """Transposed convolution (`jax.lax.conv_transpose`) over channels-last inputs.

  Kernel `kernel_size + (in_channels, filters)` (HWIO, Glorot normal as in Trax), bias
  `(filters,)`. Inputs with more than one leading batch axis are folded into one and back.

  ```python
  layer = tl.ConvTranspose(30, (3, 3))
  layer.init(key, jnp.ones((9, 5, 5, 20)))   # output (9, 7, 7, 30) with 'VALID' padding
  ```
  """

  filters: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  padding: str = "VALID"
  rhs_dilation: Sequence[int] | None = None
  kernel_initializer: Callable = nn.initializers.glorot_normal()
  bias_initializer: Callable = nn.initializers.normal(stddev=1e-6)

  def contract(self, x):
    n = len(self.kernel_size)
    chex.assert_shape(x, (...,) + (None,) * (n + 2), exception_type=ValueError, custom_message=(
        f"expects inputs (batch, {n} spatial axes, channels), got {describe([x])}"))

  @nn.compact
  def forward(self, x):
    n = len(self.kernel_size)
    lead = x.shape[: x.ndim - n - 1]
    x = jnp.reshape(x, (-1,) + x.shape[x.ndim - n - 1 :])
    kernel = self.param("kernel", self.kernel_initializer,
                        tuple(self.kernel_size) + (x.shape[-1], self.filters))
    bias = self.param("bias", self.bias_initializer, (self.filters,))
    spatial = "HWD"[:n] if n <= 3 else None
    if spatial is None:
      raise ValueError(f"ConvTranspose supports 1 to 3 spatial axes, got kernel_size="
                       f"{self.kernel_size}")
    numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    x, kernel, bias = promote_dtype(x, kernel, bias)
    y = lax.conv_transpose(x, kernel, tuple(self.strides or (1,) * n), self.padding,
                           rhs_dilation=self.rhs_dilation, dimension_numbers=numbers)
    y = y + lax.broadcast_to_rank(bias, y.ndim)
    return jnp.reshape(y, lead + y.shape[1:])


__all__ = ["ConvTranspose"]
