"""Trax's array functions from `trax.layers.core`: `one_hot`, `log_softmax`, `log_gaussian_pdf`,
`log_gaussian_diag_pdf` (plain functions on arrays, not layers).

```python
from declax.layers import one_hot
one_hot(jnp.array([0, 2]), 3)   # [[1., 0., 0.], [0., 0., 1.]]
```
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def one_hot(x: jax.Array, n_categories: int, dtype: Any = jnp.float32) -> jax.Array:
  """`(...)` category ids -> `(..., n_categories)` one-hot vectors; ids outside the range (or
  non-integral float ids) give all-zero rows, as in Trax.

  ```python
  one_hot(jnp.array([1, 3]), 3)   # [[0., 1., 0.], [0., 0., 0.]]
  ```
  """
  return jnp.asarray(jnp.asarray(x)[..., None] == jnp.arange(n_categories), dtype)


def log_softmax(x: jax.Array, axis: int = -1) -> jax.Array:
  """`x - logsumexp(x, axis)`: log-probabilities along `axis`.

  ```python
  jnp.exp(log_softmax(jnp.zeros(4)))   # [0.25, 0.25, 0.25, 0.25]
  ```
  """
  return x - jax.nn.logsumexp(x, axis=axis, keepdims=True)


def log_gaussian_pdf(x: jax.Array, mu: jax.Array, sigma: jax.Array) -> jax.Array:
  """`log N(x | mu, sigma)` for a full covariance matrix `sigma (..., d, d)`.

  ```python
  log_gaussian_pdf(jnp.zeros(2), jnp.zeros(2), jnp.eye(2))   # -log(2 pi) = -1.8379
  ```
  """
  a = mu.shape[-1] * jnp.log(2 * jnp.pi)
  _, b = jnp.linalg.slogdet(sigma)
  y = jnp.linalg.solve(sigma, (x - mu)[..., None])
  c = jnp.matmul(jnp.expand_dims(x - mu, axis=-2), y)[..., 0, 0]
  return -0.5 * (a + b + c)


def log_gaussian_diag_pdf(x: jax.Array, mu: jax.Array, diag_sigma: jax.Array) -> jax.Array:
  """Trax's `log_gaussian_diag_pdf(x, mu, diag_sigma)`, formula for formula.

  Trax computes the quadratic term as `(x - mu) . (x - mu / diag_sigma)` (the division binds to
  `mu` only); declax keeps that formula so that results match Trax. For the textbook density
  use `log_gaussian_pdf(x, mu, jnp.diag(diag_sigma))`.

  ```python
  log_gaussian_diag_pdf(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))   # -1.8379
  ```
  """
  a = mu.shape[-1] * jnp.log(2 * jnp.pi)
  b = jnp.sum(jnp.log(diag_sigma), axis=-1)
  y = jnp.expand_dims(x - mu / diag_sigma, axis=-1)
  c = jnp.matmul(jnp.expand_dims(x - mu, axis=-2), y)[..., 0, 0]
  return -0.5 * (a + b + c)
