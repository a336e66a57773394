"""More of Trax's element-wise layers: `HardSigmoid`, `Exp`, `Log`, `LogSumExp`,
`ThresholdToBinary` and the learned `ThresholdedLinearUnit`.

```python
tl.HardSigmoid().apply({}, jnp.array([-2.0, -0.5, 1.0]))   # [0., 0.5, 1.]
```
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer


class HardSigmoid(Layer):
  """Linear approximation of a sigmoid, as in Trax: `clip(1 + x, 0, 1)`.

  ```python
  tl.HardSigmoid().apply({}, jnp.array([-2.0, -0.5, 1.0]))   # [0., 0.5, 1.]
  ```
  """

  def forward(self, x):
    return jnp.clip(1 + x, 0, 1)


class Exp(Layer):
  """Element-wise `exp(x)`: `tl.Exp().apply({}, jnp.zeros(2))` is `[1., 1.]`."""

  def forward(self, x):
    return jnp.exp(x)


class Log(Layer):
  """Element-wise natural logarithm: `tl.Log().apply({}, jnp.ones(2))` is `[0., 0.]`."""

  def forward(self, x):
    return jnp.log(x)


class LogSumExp(Layer):
  """`log(sum(exp(x)))` along `axis`, keeping that axis (size 1), as in Trax.

  ```python
  tl.LogSumExp().apply({}, jnp.zeros((2, 4))).shape   # (2, 1)
  ```
  """

  axis: int = -1

  def forward(self, x):
    return jax.nn.logsumexp(x, axis=self.axis, keepdims=True)


class ThresholdToBinary(Layer):
  """1 (int32) where `x > threshold` (default 0.5), else 0: a binary classifier for
  `tl.Accuracy(classifier=tl.ThresholdToBinary())`."""

  threshold: float = 0.5

  def forward(self, x):
    return (x > self.threshold).astype(jnp.int32)


class ThresholdedLinearUnit(Layer):
  """Thresholded linear unit (arXiv:1911.09737): `max(x, tau)` with a learned scalar `tau`
  (parameter `threshold`, initialised to 0).

  ```python
  layer = tl.ThresholdedLinearUnit()
  layer.apply(layer.init(key, x), x)   # == max(x, 0) at initialisation
  ```
  """

  @nn.compact
  def forward(self, x):
    threshold = self.param("threshold", nn.initializers.zeros, (), jnp.float32)
    return jnp.maximum(x, jnp.asarray(threshold, jnp.result_type(x)))
