"""Activation layers: element-wise (or last-axis) nonlinearities with Trax's names and arguments.

Every activation is a parameter-free 1-in/1-out layer that keeps its input's shape (except `Glu`,
which halves `axis`) and dtype. They are defined by one small factory, so each is a real class
(`isinstance(layer, tl.Relu)`, printed as `Relu`) whose fields are Trax's arguments.

```python
model = tl.Serial(tl.Dense(8), tl.Relu(), tl.Dense(2), tl.LogSoftmax())
tl.LeakyRelu(a=0.2).apply({}, jnp.array([-1.0, 1.0]))   # [-0.2, 1.]
```
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from declax.layers.base import Layer, describe


def _activation(name: str, fn: Callable, doc: str, **fields) -> type:
  """Defines an activation layer class `name` computing `fn(x, **fields)`.

  `fields` maps each of Trax's argument names to its default; they become dataclass fields.
  """

  def forward(self, x):
    return fn(x, **{field: getattr(self, field) for field in fields})

  namespace = {
      "__module__": __name__, "__qualname__": name, "__doc__": doc, "forward": forward,
      "__annotations__": {field: type(default) for field, default in fields.items()},
      **fields,
  }
  return type(name, (Layer,), namespace)


def _glu(x, axis):
  if x.shape[axis] % 2:
    raise ValueError(f"Glu splits axis {axis} in two halves; its size must be even, got "
                     f"{describe([x])}")
  return jax.nn.glu(x, axis=axis)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946

Relu = _activation("Relu", jax.nn.relu, """Rectified linear unit: `max(x, 0)`.

  ```python
  tl.Relu().apply({}, jnp.array([-1.0, 2.0]))   # [0., 2.]
  ```
  """)
ParametricRelu = _activation(
    "ParametricRelu", lambda x, a: jnp.maximum(a * x, 0), """`max(a * x, 0)`, a ReLU with slope
  `a` for positive inputs (Trax's `ParametricRelu(a=1.)`).""", a=1.0)
LeakyRelu = _activation("LeakyRelu", lambda x, a: jax.nn.leaky_relu(x, a), """`x` for `x >= 0`,
  `a * x` otherwise.

  ```python
  tl.LeakyRelu(a=0.1).apply({}, jnp.array([-1.0, 2.0]))   # [-0.1, 2.]
  ```
  """, a=0.01)
Elu = _activation("Elu", lambda x, a: jax.nn.elu(x, a), """Exponential linear unit: `x` for
  `x > 0`, `a * (exp(x) - 1)` otherwise. `tl.Elu(a=1.)`.""", a=1.0)
Selu = _activation(
    "Selu", lambda x, alpha, lmbda: lmbda * jax.nn.elu(x, alpha), """Scaled ELU:
  `lmbda * (x if x > 0 else alpha * (exp(x) - 1))`; the defaults are the self-normalising
  constants (`jax.nn.selu`). `tl.Selu()`.""", alpha=_SELU_ALPHA, lmbda=_SELU_LAMBDA)
Gelu = _activation("Gelu", lambda x: jax.nn.gelu(x, approximate=False), """Gaussian error
  linear unit, exact: `x * Phi(x) = x / 2 * (1 + erf(x / sqrt(2)))`. `tl.Gelu()`; see also
  `FastGelu`.""")
FastGelu = _activation("FastGelu", lambda x: jax.nn.gelu(x, approximate=True), """The tanh
  approximation of `Gelu`: `x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))`.
  `tl.FastGelu()`.""")
Sigmoid = _activation("Sigmoid", jax.nn.sigmoid, """Logistic sigmoid: `1 / (1 + exp(-x))`.
  `tl.Sigmoid()`.""")
Tanh = _activation("Tanh", jnp.tanh, """Hyperbolic tangent. `tl.Tanh()`.""")
HardTanh = _activation("HardTanh", jax.nn.hard_tanh, """`clip(x, -1, 1)`. `tl.HardTanh()`.""")
Softplus = _activation("Softplus", jax.nn.softplus, """`log(1 + exp(x))`, a smooth ReLU.
  `tl.Softplus()`.""")
Swish = _activation("Swish", jax.nn.swish, """`x * sigmoid(x)` (also called SiLU).
  `tl.Swish()`.""")
Softmax = _activation("Softmax", lambda x, axis: jax.nn.softmax(x, axis=axis), """Softmax
  along `axis`: values become probabilities that sum to 1.

  ```python
  tl.Softmax().apply({}, jnp.zeros((2, 4)))   # every entry 0.25
  ```
  """, axis=-1)
LogSoftmax = _activation("LogSoftmax", lambda x, axis: jax.nn.log_softmax(x, axis=axis),
                         """`x - logsumexp(x, axis)`: log-probabilities along `axis`.

  ```python
  model = tl.Serial(tl.Dense(10), tl.LogSoftmax())   # then tl.CrossEntropyLoss()
  ```
  """, axis=-1)
Glu = _activation("Glu", _glu, """Gated linear unit: splits `axis` (default -1) into halves
  `a, b` and returns `a * sigmoid(b)`, so `(..., 2n) -> (..., n)`.

  ```python
  tl.Glu().apply({}, jnp.ones((2, 8))).shape   # (2, 4)
  ```
  """, axis=-1)


__all__ = [
    "Elu", "FastGelu", "Gelu", "Glu", "HardTanh", "LeakyRelu", "LogSoftmax", "ParametricRelu",
    "Relu", "Selu", "Sigmoid", "Softmax", "Softplus", "Swish", "Tanh",
]
