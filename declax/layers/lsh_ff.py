"""Trax's `LSHFF`: a feed-forward block whose first layer only computes the hidden units that
share an LSH bucket with the input."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer
from declax.layers.lsh_attention import _check_n_buckets, hash_vecs

__all__ = ["LSHFF"]


class LSHFF(Layer):
  """`Dense(d_ff) -> Relu -> Dense(d_model)` where hidden unit `j` is computed for input row `x`
  only if `x` and row `j` of the first kernel fall in the same bucket in one of `n_hashes`
  hashings (Trax's `LSHFF`): `(..., d_model) -> (..., d_model)`.

  Weights (Trax's layout): `w1 (d_ff, d_model)`, `w2 (d_ff, d_model)`, `b2 (d_model,)`. The
  random rotations are drawn as in `LSHSelfAttention`: afresh in `'train'` mode from the
  `'hash'` (else `'dropout'`) stream, fixed per layer otherwise.

  ```python
  layer = tl.LSHFF(d_ff=256, n_buckets=8)
  y = layer.apply(layer.init(jax.random.PRNGKey(0), x), x)      # x's shape
  ```
  """

  d_ff: int
  n_buckets: int | Sequence[int]
  n_hashes: int = 4
  mode: str = "train"
  kernel_initializer: Callable = nn.initializers.xavier_uniform(in_axis=-1, out_axis=-2)
  bias_initializer: Callable = nn.initializers.normal(1e-6)
  hash_seed: int = 0

  def __post_init__(self):
    _check_n_buckets("LSHFF", self.n_buckets)
    if isinstance(self.n_buckets, list):
      object.__setattr__(self, "n_buckets", tuple(self.n_buckets))
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return f"LSHFF_{self.d_ff}"

  def _hash_rng(self) -> jax.Array:
    if self.mode == "train":
      for stream in ("hash", "dropout"):
        if self.has_rng(stream):
          return self.make_rng(stream)
    path = "/".join(str(p) for p in self.scope.path)
    return jax.random.fold_in(jax.random.PRNGKey(self.hash_seed), zlib.crc32(path.encode()))

  @nn.compact
  def forward(self, x):
    d_model = x.shape[-1]
    w1 = self.param("w1", self.kernel_initializer, (self.d_ff, d_model))
    w2 = self.param("w2", self.kernel_initializer, (self.d_ff, d_model))
    b2 = self.param("b2", self.bias_initializer, (d_model,))
    flat = x.reshape(-1, d_model)
    rng = self._hash_rng()
    # The same rotations hash the inputs and the first kernel's rows.
    x_buckets, _ = hash_vecs(flat, self.n_buckets, self.n_hashes, rng)   # (n_hashes, rows)
    w1_buckets, _ = hash_vecs(w1, self.n_buckets, self.n_hashes, rng)    # (n_hashes, d_ff)
    same = jnp.any(x_buckets[:, :, None] == w1_buckets[:, None, :], axis=0)
    mid = (flat @ w1.T) * jax.lax.stop_gradient(same).astype(flat.dtype)
    out = jnp.maximum(mid, 0) @ w2 + b2[None, :]
    return out.reshape(x.shape)
