"""Activation layers: element-wise (or last-axis) nonlinearities with Trax's names and arguments.

Every activation is a parameter-free 1-in/1-out layer that keeps its input's shape (except `Glu`,
which halves `axis`) and dtype: a `Layer` whose `forward` is one line and whose fields are
Trax's arguments (so `isinstance(layer, tl.Relu)` holds and it prints as `Relu`).

```python
model = tl.Serial(tl.Dense(8), tl.Relu(), tl.Dense(2), tl.LogSoftmax())
tl.LeakyRelu(a=0.2).apply({}, jnp.array([-1.0, 1.0]))   # [-0.2, 1.]
```
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from declax.layers.base import Layer
from declax.layers.stack import describe

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946


class Relu(Layer):
  """Rectified linear unit: `max(x, 0)`.

  ```python
  tl.Relu().apply({}, jnp.array([-1.0, 2.0]))   # [0., 2.]
  ```
  """

  def forward(self, x):
    return jax.nn.relu(x)


class ParametricRelu(Layer):
  """`max(a * x, 0)`, a ReLU with slope `a` for positive inputs (Trax's `ParametricRelu(a=1.)`)."""

  a: float = 1.0

  def forward(self, x):
    return jnp.maximum(self.a * x, 0)


class LeakyRelu(Layer):
  """`x` for `x >= 0`, `a * x` otherwise.

  ```python
  tl.LeakyRelu(a=0.1).apply({}, jnp.array([-1.0, 2.0]))   # [-0.1, 2.]
  ```
  """

  a: float = 0.01

  def forward(self, x):
    return jax.nn.leaky_relu(x, self.a)


class Elu(Layer):
  """Exponential linear unit: `x` for `x > 0`, `a * (exp(x) - 1)` otherwise. `tl.Elu(a=1.)`."""

  a: float = 1.0

  def forward(self, x):
    return jax.nn.elu(x, self.a)


class Selu(Layer):
  """Scaled ELU: `lmbda * (x if x > 0 else alpha * (exp(x) - 1))`; the defaults are the
  self-normalising constants (`jax.nn.selu`). `tl.Selu()`."""

  alpha: float = _SELU_ALPHA
  lmbda: float = _SELU_LAMBDA

  def forward(self, x):
    return self.lmbda * jax.nn.elu(x, self.alpha)


class Gelu(Layer):
  """Gaussian error linear unit, exact: `x * Phi(x) = x / 2 * (1 + erf(x / sqrt(2)))`.
  `tl.Gelu()`; see also `FastGelu`."""

  def forward(self, x):
    return jax.nn.gelu(x, approximate=False)


class FastGelu(Layer):
  """The tanh approximation of `Gelu`: `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`.
  `tl.FastGelu()`."""

  def forward(self, x):
    return jax.nn.gelu(x, approximate=True)


class Sigmoid(Layer):
  """Logistic sigmoid: `1 / (1 + exp(-x))`. `tl.Sigmoid()`."""

  def forward(self, x):
    return jax.nn.sigmoid(x)


class Tanh(Layer):
  """Hyperbolic tangent. `tl.Tanh()`."""

  def forward(self, x):
    return jnp.tanh(x)


class HardTanh(Layer):
  """`clip(x, -1, 1)`. `tl.HardTanh()`."""

  def forward(self, x):
    return jax.nn.hard_tanh(x)


class Softplus(Layer):
  """`log(1 + exp(x))`, a smooth ReLU. `tl.Softplus()`."""

  def forward(self, x):
    return jax.nn.softplus(x)


class Swish(Layer):
  """`x * sigmoid(x)` (also called SiLU). `tl.Swish()`."""

  def forward(self, x):
    return jax.nn.swish(x)


class Softmax(Layer):
  """Softmax along `axis`: values become probabilities that sum to 1.

  ```python
  tl.Softmax().apply({}, jnp.zeros((2, 4)))   # every entry 0.25
  ```
  """

  axis: int = -1

  def forward(self, x):
    return jax.nn.softmax(x, axis=self.axis)


class LogSoftmax(Layer):
  """`x - logsumexp(x, axis)`: log-probabilities along `axis`.

  ```python
  model = tl.Serial(tl.Dense(10), tl.LogSoftmax())   # then tl.CrossEntropyLoss()
  ```
  """

  axis: int = -1

  def forward(self, x):
    return jax.nn.log_softmax(x, axis=self.axis)


class Glu(Layer):
  """Gated linear unit: splits `axis` (default -1) into halves `a, b` and returns
  `a * sigmoid(b)`, so `(..., 2n) -> (..., n)`.

  ```python
  tl.Glu().apply({}, jnp.ones((2, 8))).shape   # (2, 4)
  ```
  """

  axis: int = -1

  def contract(self, x):
    chex.assert_is_divisible(x.shape[self.axis], 2, exception_type=ValueError, custom_message=(
        f"Glu splits axis {self.axis} in two halves; its size must be even, got {describe([x])}"))

  def forward(self, x):
    return jax.nn.glu(x, axis=self.axis)


__all__ = [
    "Elu", "FastGelu", "Gelu", "Glu", "HardTanh", "LeakyRelu", "LogSoftmax", "ParametricRelu",
    "Relu", "Selu", "Sigmoid", "Softmax", "Softplus", "Swish", "Tanh",
]
