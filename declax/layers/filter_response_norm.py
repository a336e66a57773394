"""`FilterResponseNorm` (arXiv:1911.09737), without its thresholded linear unit (pair it with
`tl.ThresholdedLinearUnit`), as in Trax.

```python
tl.Serial(tl.Conv(8, (3, 3)), tl.FilterResponseNorm(), tl.ThresholdedLinearUnit())
```
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer, describe
from declax.layers.dtypes import promote_dtype
from declax.layers.errors import LayerArgumentError


class FilterResponseNorm(Layer):
  """`gamma * x / sqrt(mean(x**2 over the spatial axes) + eps) + beta` per example and channel.

  `eps = init_epsilon`, plus `|learnt|` (a parameter starting at `init_learnt_epsilon`) with
  `learn_epsilon=True`. Parameters `gamma` (ones), `beta` (zeros) of shape `(channels,)`.
  `mode` is accepted and ignored, as in Trax.

  ```python
  layer = tl.FilterResponseNorm(learn_epsilon=True)
  layer.init(key, jnp.ones((4, 5, 7, 3)))   # gamma, beta (3,), epsilon_l (1,)
  ```
  """

  mode: str | None = None
  learn_epsilon: bool = False
  init_epsilon: float = 1e-6
  init_learnt_epsilon: float = 1e-4

  def __post_init__(self):
    if self.init_epsilon <= 0 or self.init_learnt_epsilon <= 0:
      raise LayerArgumentError("FilterResponseNorm: init_epsilon and init_learnt_epsilon must be "
                       f"positive, got {self.init_epsilon} and {self.init_learnt_epsilon}")
    super().__post_init__()

  def contract(self, x):
    chex.assert_shape(x, (None, None, ..., None), exception_type=ValueError, custom_message=(
        f"expects inputs (batch, spatial..., channels), got {describe([x])}"))

  @nn.compact
  def forward(self, x):
    channels = x.shape[-1]
    gamma = self.param("gamma", nn.initializers.ones, (channels,))
    beta = self.param("beta", nn.initializers.zeros, (channels,))
    epsilon = jnp.asarray(self.init_epsilon, jnp.float32)
    if self.learn_epsilon:
      learnt = self.param("epsilon_l", nn.initializers.constant(self.init_learnt_epsilon), (1,))
      epsilon = epsilon + jnp.abs(learnt[0])
    x, gamma, beta, epsilon = promote_dtype(x, gamma, beta, epsilon)  # Trax: standard promotion
    nu2 = jnp.mean(x**2, axis=tuple(range(1, x.ndim - 1)), keepdims=True)
    gamma, beta = (jax.lax.broadcast_to_rank(p, x.ndim) for p in (gamma, beta))
    return gamma * (x / jnp.sqrt(nu2 + epsilon)) + beta


__all__ = ["FilterResponseNorm"]
