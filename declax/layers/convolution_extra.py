"""Trax's causal and locally connected 1-D convolutions: `CausalConv`, `CausalDepthwiseConv`,
`LocallyConnected1d`, over `(batch, length, channels)` inputs.

```python
tl.CausalConv(filters=8, kernel_width=3)   # output t sees inputs <= t; length unchanged
```
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from declax.layers.base import Layer, describe
from declax.layers.dtypes import promote_dtype
from declax.layers.errors import LayerArgumentError


class _OnSequences(Layer):
  """Contract of the causal convolutions: inputs `(batch, length, channels)`."""

  def contract(self, x):
    chex.assert_rank(x, 3, exception_type=ValueError, custom_message=(
        f"expects inputs of shape (batch, length, channels), got {describe([x])}"))


class CausalConv(_OnSequences):
  """A 1-D convolution whose output at position `t` depends only on inputs at `<= t`: the
  input is padded on the left by `kernel_width - 1`, so the length is unchanged.

  **Arguments** (Trax's): `filters`, `kernel_width=3`, `kernel_initializer` (None: Glorot
  uniform), `bias_initializer`, `use_bias`. Weights: `kernel (kernel_width, in_channels,
  filters)` and `bias (filters,)`, as a `Conv`'s.

  ```python
  layer = tl.CausalConv(filters=30, kernel_width=3)
  layer.init(key, jnp.ones((9, 5, 20)))   # output (9, 5, 30)
  ```
  """

  filters: int = 1
  kernel_width: int = 3
  kernel_initializer: Callable | None = None
  bias_initializer: Callable = nn.initializers.normal(stddev=1e-6)
  use_bias: bool = True

  @nn.compact
  def forward(self, x):
    init = self.kernel_initializer or nn.initializers.glorot_uniform()
    kernel = self.param("kernel", init, (self.kernel_width, x.shape[-1], self.filters))
    x, kernel = promote_dtype(x, kernel)
    x = jnp.pad(x, ((0, 0), (self.kernel_width - 1, 0), (0, 0)))
    y = lax.conv_general_dilated(x, kernel, (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
    if self.use_bias:
      bias = self.param("bias", self.bias_initializer, (self.filters,))
      y = y + jax.lax.broadcast_to_rank(bias, jnp.ndim(y))
    return y


class CausalDepthwiseConv(_OnSequences):
  """Causal depthwise 1-D convolution: each channel `c` is filtered on its own,
  `y[t, c] = sum_i w[i, c] * x[t - i, c]` (zeros before the start). Weight `kernel`:
  `(kernel_size, channels)`.

  ```python
  tl.CausalDepthwiseConv(kernel_size=3)   # (batch, length, d) -> (batch, length, d)
  ```
  """

  kernel_size: int = 3
  kernel_initializer: Callable = nn.initializers.glorot_uniform()
  use_bfloat16: bool = False

  @nn.compact
  def forward(self, x):
    w = self.param("kernel", self.kernel_initializer, (self.kernel_size, x.shape[-1]))
    if self.use_bfloat16:
      w = w.astype(jnp.bfloat16)
    x, w = promote_dtype(x, w)  # Trax multiplies with standard promotion
    padded = jnp.pad(x, ((0, 0), (self.kernel_size - 1, 0), (0, 0)))
    length = x.shape[1]
    start = self.kernel_size - 1
    return sum(padded[:, start - i : start - i + length] * w[None, None, i]
               for i in range(self.kernel_size))


class LocallyConnected1d(Layer):
  """Like a 1-D convolution, but every position has its own filters (stride 1).

  Weights: `kernel (length, kernel_size, d, filters)`, indexed by *input* position as in Trax,
  and `bias (out_length, filters)`. `padding` is `'VALID'` (`out_length = length -
  kernel_size + 1`), `'SAME'` (zeros around, same length) or `'WRAP'` (circular, same length).
  `kernel_size` must be odd. Prints as `LocallyConnected1d_{filters}_{kernel_size}`.

  ```python
  layer = tl.LocallyConnected1d(6, 3, padding='SAME')
  layer.init(key, jnp.ones((3, 2)))   # (length=3, d=2) -> (3, 6)
  ```
  """

  filters: int
  kernel_size: int
  kernel_initializer: Callable = nn.initializers.glorot_uniform(in_axis=(-3, -2), out_axis=-1,
                                                                batch_axis=(0,))
  bias_initializer: Callable = nn.initializers.normal(stddev=1e-6)
  use_bias: bool = True
  padding: str = "VALID"

  def __post_init__(self):
    if self.kernel_size % 2 != 1:
      raise LayerArgumentError("LocallyConnected1d: kernel_size must be odd (a window centred on "
                               f"each position), got {self.kernel_size}")
    if self.padding not in ("VALID", "SAME", "WRAP"):
      raise LayerArgumentError("LocallyConnected1d: padding must be 'VALID', 'SAME' or 'WRAP', "
                               f"got {self.padding!r}")
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return f"LocallyConnected1d_{self.filters}_{self.kernel_size}"

  def contract(self, x):
    chex.assert_shape(x, (..., None, None), exception_type=ValueError, custom_message=(
        f"expects inputs of shape (..., length, d), got {describe([x])}"))

  @nn.compact
  def forward(self, x):
    length, d, k = x.shape[-2], x.shape[-1], self.kernel_size
    out_length = length - k + 1 if self.padding == "VALID" else length
    w = self.param("kernel", self.kernel_initializer, (length, k, d, self.filters))
    x, w = promote_dtype(x, w)
    # r[..., l, i, :] is input position l seen through kernel offset i.
    r = jnp.einsum("...lp,lkpd->...lkd", x, w)
    half = (k - 1) // 2
    total = 0.0
    for i in range(k):
      part = r[..., i, :]  # (..., length, filters)
      if self.padding == "VALID":
        part = part[..., k - 1 - i : length - i, :]
      else:
        widths = [(0, 0)] * (part.ndim - 2) + [(k - 1 - i, i), (0, 0)]
        part = jnp.pad(part, widths, mode="wrap" if self.padding == "WRAP" else "constant")
        part = part[..., half : half + length, :]
      total = total + part
    if self.use_bias:
      bias = self.param("bias", self.bias_initializer, (out_length, self.filters))
      total = total + jax.lax.broadcast_to_rank(bias, jnp.ndim(total))
    return total
