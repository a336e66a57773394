"""Position encodings from Trax's research layers: axial, fixed-base, sin-cos with random offsets,
"infinite" (random-walk phases), time-bin features and rotary embeddings (`Rotate`).

Every encoding maps `(batch, length, d_feature) -> (batch, length, d_feature)`. In `'predict'`
mode the current position lives in the `'cache'` collection and advances by the input length on
each call (when `'cache'` is mutable), so decoding one token at a time equals the full pass.

```python
import declax.layers as tl
enc = tl.AxialPositionalEncoding(shape=(8, 16), d_embs=(16, 16))   # max length 128, d 32
```
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.errors import DeclaxError
from declax.layers.base import Layer, describe
from declax.layers.core import apply_dropout


class AxialShapeError(DeclaxError, ValueError):
  """An axial position encoding whose shape or depths do not fit the model."""


def _broadcasting(fn: Callable) -> Callable:
  """Runs `fn` with NumPy's rank broadcasting and standard dtype promotion: the encodings mix
  integer positions with per-feature float vectors (outputs are cast to the input dtype)."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
      return fn(*args, **kwargs)
  return wrapped


class _OnSequences(Layer):
  """Base of the position encodings: inputs `(batch, length, d_feature)`, taken as JAX arrays
  (`jnp.asarray`: float64 NumPy inputs become float32, as JAX does by default)."""

  def contract(self, x):
    chex.assert_rank(x, 3, exception_type=ValueError, custom_message=(
        f"expects inputs of shape (batch, length, d_feature), got {describe([x])}"))


def _position_cache(module: nn.Module, length: int, shape: tuple = ()) -> jax.Array:
  """`'predict'` mode: the start position(s) in the cache, advanced by `length` after this call."""
  position = module.variable("cache", "position", lambda: jnp.zeros(shape, jnp.int32))
  start = position.value
  if module.is_mutable_collection("cache") and not module.is_initializing():
    position.value = start + length
  return start


def _check_dropout(owner: str, rate: float) -> None:
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"{owner}: dropout must be in [0, 1), got {rate}")


# ------------------------------------------------------------------------------------------------
# Axial
# ------------------------------------------------------------------------------------------------


class AxialPositionalEncoding(_OnSequences):
  """Learned position embeddings factored over the axes of `shape` (Reformer's axial encoding).

  Position `p` of a sequence is read as a multi-index into `shape` (row-major); axis `i` has its
  own table of `shape[i]` vectors of depth `d_embs[i]`, and the encoding is their
  concatenation, so `sum(d_embs)` must equal the input depth and sequences may be at most
  `prod(shape)` long. Parameters: `ax_0, ax_1, ...` of shape `(shape[i], d_embs[i])`.

  ```python
  enc = tl.AxialPositionalEncoding(shape=(64, 32), d_embs=(128, 128))  # 2048 positions, d 256
  ```
  """

  shape: Sequence[int] = (64, 64, 3)
  d_embs: Sequence[int] = (384, 384, 256)
  kernel_initializer: Callable = nn.initializers.normal(1.0)
  dropout: float = 0.0
  dropout_broadcast_dims: Sequence[int] = ()
  mode: str = "train"

  def __post_init__(self):
    object.__setattr__(self, "shape", tuple(self.shape))
    object.__setattr__(self, "d_embs", tuple(self.d_embs))
    if len(self.shape) != len(self.d_embs):
      raise AxialShapeError(f"AxialPositionalEncoding: shape {self.shape} and d_embs "
                            f"{self.d_embs} must have the same length")
    _check_dropout("AxialPositionalEncoding", self.dropout)
    super().__post_init__()

  @property
  def max_len(self) -> int:
    return math.prod(self.shape)

  def table(self, d_feature: int) -> jax.Array:
    """The full encoding `(prod(shape), d_feature)`."""
    if sum(self.d_embs) != d_feature:
      raise AxialShapeError(f"AxialPositionalEncoding: sum(d_embs) = sum({self.d_embs}) = "
                            f"{sum(self.d_embs)} must equal the input depth {d_feature}")
    parts = []
    for axis, (size, depth) in enumerate(zip(self.shape, self.d_embs, strict=True)):
      emb = self.param(f"ax_{axis}", self.kernel_initializer, (size, depth))
      view = [1] * len(self.shape)
      view[axis] = size
      parts.append(jnp.broadcast_to(emb.reshape(*view, depth), self.shape + (depth,)))
    return jnp.concatenate(parts, axis=-1).reshape(self.max_len, d_feature)

  def contract(self, x):
    super().contract(x)
    chex.assert_axis_dimension_lteq(x, 1, self.max_len, exception_type=AxialShapeError,
                                    custom_message=(
        f"AxialPositionalEncoding: sequence length {x.shape[1]} exceeds prod(shape={self.shape}) "
        f"= {self.max_len}"))

  @nn.compact
  @_broadcasting
  def forward(self, x):
    x = jnp.asarray(x)
    length = x.shape[1]
    table = self.table(x.shape[2]).astype(x.dtype)
    if self.mode == "predict":
      start = _position_cache(self, length)
      emb = jax.lax.dynamic_slice_in_dim(table, start, length, axis=0)[None]
      return x + emb
    emb = table[None, :length]
    if self.mode == "train" and self.dropout > 0.0:
      # Trax broadcasts over the axial axes; here over the length (their flattened form).
      shared = (0, 1) if self.dropout_broadcast_dims else (0,)
      emb = apply_dropout(self, emb, self.dropout, shared)
    return x + emb


# ------------------------------------------------------------------------------------------------
# Sin-cos with random start, fixed base
# ------------------------------------------------------------------------------------------------


class SinCosPositionalEncoding(_OnSequences):
  """Sinusoids `[sin | cos]` of the positions, starting at a random offset in training.

  In `'train'` mode the positions start at a random offset below `add_offset`, except one time
  in `start_from_zero_one_in` (Trax's semantics); `'eval'` starts at 0. No parameters.

  ```python
  tl.SinCosPositionalEncoding(mode='eval').apply({}, x)
  ```
  """

  add_offset: int = 2048
  dropout: float = 0.0
  dropout_broadcast_dims: Sequence[int] = (-2,)
  start_from_zero_one_in: int = 2
  mode: str = "train"

  @staticmethod
  def sincos(start, length: int, d_feature: int) -> jax.Array:
    position = (jnp.arange(length) + start)[:, None].astype(jnp.float32)
    div = jnp.exp(jnp.arange(0, d_feature, 2) * -(np.log(10000.0) / d_feature))
    return jnp.concatenate([jnp.sin(position * div), jnp.cos(position * div)], axis=1)[None]

  @nn.compact
  @_broadcasting
  def forward(self, x):
    x = jnp.asarray(x)
    length, d = x.shape[1], x.shape[2]
    if self.mode == "predict":
      return x + self.sincos(_position_cache(self, length), length, d)[..., :d].astype(x.dtype)
    start = 0
    if self.mode == "train":
      rng1, rng2 = jax.random.split(self.make_rng("dropout"))
      start = jax.random.randint(rng1, (), 0, self.add_offset)
      start *= jnp.minimum(1, jax.random.randint(rng2, (), 0, self.start_from_zero_one_in))
    emb = self.sincos(start, length, d)[..., :d].astype(x.dtype)
    if self.mode == "train" and self.dropout > 0.0:
      shared = tuple(a % 3 for a in self.dropout_broadcast_dims)
      emb = apply_dropout(self, emb, self.dropout, shared)
    return x + emb


class FixedBasePositionalEncoding(_OnSequences):
  """Positions written in several number bases; each digit scales a learned vector.

  For each base `b` in `bases`, the `n_digits` digits of the position in base `b` multiply
  learned vectors of depth `d_feature / n_digits`; the results are summed over bases and a
  learned start vector marks position 0. Training starts at a random position (except one
  time in `start_from_zero_one_in`) and drops a base one time in `base_dropout_one_in`.

  ```python
  enc = tl.FixedBasePositionalEncoding(bases=[11, 13], n_digits=4)   # d_feature % 4 == 0
  ```
  """

  bases: Sequence[int] = (11, 13, 14, 15)
  n_digits: int = 8
  start_from_zero_one_in: int = 2
  base_dropout_one_in: int = 100
  mode: str = "train"
  initializer: Callable = nn.initializers.uniform(2e-4)

  @nn.compact
  @_broadcasting
  def forward(self, x):
    x = jnp.asarray(x)
    batch, length, d_feature = x.shape
    if d_feature % self.n_digits:
      raise ValueError(f"FixedBasePositionalEncoding: d_feature {d_feature} must be divisible "
                       f"by n_digits {self.n_digits}")
    init = lambda key, shape: self.initializer(key, shape) - 1e-4  # Trax: uniform(-1e-4, 1e-4)
    base_weights = self.param("base_weights", init,
                              (len(self.bases), self.n_digits, d_feature // self.n_digits))
    start_vec = self.param("start_vec", init, (1, 1, d_feature))
    max_pos = min(self.bases) ** self.n_digits
    positions = jnp.broadcast_to(jnp.arange(length)[None, :], (batch, length))
    if self.mode == "train":
      rng1, rng2, rng3 = jax.random.split(self.make_rng("dropout"), 3)
      nonzero = jnp.minimum(1, jax.random.randint(rng1, (batch,), 0, self.start_from_zero_one_in))
      positions = positions + (jax.random.randint(rng2, (batch,), 0, max_pos - length)
                               * nonzero)[:, None]
    first_call = None
    if self.mode == "predict":
      start = _position_cache(self, length)
      positions = positions + start
      first_call = start == 0
    res = 0.0
    for b, base in enumerate(self.bases):
      digits, current = [], positions
      for i in range(self.n_digits):
        digits.append((current % base).astype(jnp.float32)[:, :, None] * base_weights[b, i])
        current = current // base
      emb = jnp.concatenate(digits, axis=-1)
      if self.mode == "train":
        keep = jnp.minimum(1, jax.random.randint(rng3, (batch,), 0, self.base_dropout_one_in))
        emb = emb * keep.astype(jnp.float32)[:, None, None]
      res = res + emb
    start_pos = res[:, :1] + start_vec
    if first_call is not None:
      start_pos = jnp.where(first_call, start_pos, res[:, :1])
    return x + jnp.concatenate([start_pos, res[:, 1:]], axis=1).astype(x.dtype)


# ------------------------------------------------------------------------------------------------
# Infinite and time-bin
# ------------------------------------------------------------------------------------------------

_NOISE_KEY = 234234535  # Trax's fixed seed: the random walk is the same for every model


def _walk_steps(positions: jax.Array, depth: int) -> jax.Array:
  """Unit-variance uniform steps of the random walk at integer `positions` -> `(..., depth)`."""
  key = jax.random.PRNGKey(_NOISE_KEY)
  step = lambda p: jax.random.uniform(jax.random.fold_in(key, p), (depth,), minval=-3 ** .5,
                                      maxval=3 ** .5)
  flat = jax.vmap(step)(positions.reshape(-1))
  return flat.reshape(positions.shape + (depth,))


def _time_bin_features(t: jax.Array, bin_length: int) -> jax.Array:
  inter, intra = jnp.divmod(t, bin_length)
  return jnp.stack([1 / (1 + inter), intra / bin_length, (inter % 2).astype(jnp.float32)], -1)


class InfinitePositionalEncoding(_OnSequences):
  """Position encodings for unbounded lengths: cosines of slowly drifting random-walk phases.

  Feature pairs rotate at geometrically spaced frequencies; their phases drift by a fixed
  random walk (variance `drift` per step), so no position repeats. `affine=True` adds a random
  phase per call in `'train'` mode (the `'dropout'` stream); `'eval'` and `'predict'` use phase 0,
  so decoding step by step equals the full pass. `transform`: a learned `'any'` (orthogonal
  matrix), `'diag'` (softplus scale) or `'none'` map of the encodings. `time_bin_length` puts
  `TimeBinPositionalEncoding`'s three features in the last three channels.

  ```python
  enc = tl.InfinitePositionalEncoding(affine=False)
  ```
  """

  drift: float = 0.03
  affine: bool = True
  transform: str = "any"
  time_bin_length: int | None = None
  mode: str = "train"

  def __post_init__(self):
    if self.transform not in ("any", "diag", "none"):
      raise ValueError(f"InfinitePositionalEncoding: transform must be 'any', 'diag' or 'none', "
                       f"got {self.transform!r}")
    super().__post_init__()

  def _embeddings(self, t: jax.Array, noise: jax.Array, depth: int, phase) -> jax.Array:
    c = jnp.arange(depth)
    half, odd = c // 2, c % 2
    drift = self.drift ** (((depth + 1) // 2) / (depth // 2)) if depth > 2 else self.drift
    freq = jnp.geomspace(.5, .5 * drift ** 2, num=(depth + 1) // 2)[half]
    cycles = odd / 4 + freq * t[..., None] + noise[..., half] * self.drift ** .5 / 4 + phase
    emb = jnp.cos(jnp.pi * 2 * cycles)
    if self.time_bin_length is not None:
      emb = jnp.concatenate([emb[..., :-3], _time_bin_features(t, self.time_bin_length)], -1)
    return emb

  @nn.compact
  @_broadcasting
  def forward(self, x):
    x = jnp.asarray(x)
    batch, length, depth = x.shape
    half = (depth + 1) // 2
    phase = 0.0
    if self.affine and self.mode == "train":
      phase = jax.random.uniform(self.make_rng("dropout"), (depth,))
    if self.mode == "predict":
      start = _position_cache(self, length, (batch,))
      walk = self.variable("cache", "walk", lambda: jnp.zeros((batch, half), jnp.float32))
      t = start[:, None] + jnp.arange(length)[None]
      noise = walk.value[:, None] + jnp.cumsum(_walk_steps(t, half), axis=1)
      if self.is_mutable_collection("cache") and not self.is_initializing():
        walk.value = noise[:, -1]
      emb = self._embeddings(t, noise, depth, phase)
    else:
      t = jnp.arange(length)
      noise = jnp.cumsum(_walk_steps(t, half), axis=0)
      emb = self._embeddings(t, noise, depth, phase)[None]
    if self.transform == "diag":
      scale = self.param("weights", nn.initializers.constant(1e-4), (depth,))
      emb = emb * jax.nn.softplus(scale)
    elif self.transform == "any":
      emb = emb @ self.param("weights", nn.initializers.orthogonal(), (depth, depth))
    return x + emb.astype(x.dtype)


class TimeBinPositionalEncoding(_OnSequences):
  """Writes three time-bin features into the last three channels (replacing them):
  `1 / (1 + bin)`, the fraction through the bin, and the bin's parity.

  ```python
  enc = tl.TimeBinPositionalEncoding(time_bin_length=5)
  ```
  """

  time_bin_length: int = 5
  mode: str = "train"
  num_features = 3

  @nn.compact
  @_broadcasting
  def forward(self, x):
    x = jnp.asarray(x)
    batch, length, depth = x.shape
    if self.mode == "predict":
      t = _position_cache(self, length, (batch,))[:, None] + jnp.arange(length)[None]
    else:
      t = jnp.broadcast_to(jnp.arange(length)[None], (batch, length))
    emb = _time_bin_features(t, self.time_bin_length).astype(x.dtype)
    out = jnp.concatenate([x[..., :-self.num_features], emb], -1)
    return out[..., -depth:]


# ------------------------------------------------------------------------------------------------
# Rotary
# ------------------------------------------------------------------------------------------------


@_broadcasting
def rotate(x: jax.Array) -> jax.Array:
  """Rotary position embedding (Su et al. 2021) of `(batch, length, d)` vectors.

  ```python
  q = rotate(q)   # dot products of rotated vectors depend on relative positions
  ```
  """
  _, length, d = x.shape
  inv_freq = jnp.exp(jnp.arange(0, d, 2) * -(jnp.log(10000.0) / d))
  freqs = jnp.arange(length)[:, None] * inv_freq[None, :]
  emb = jnp.concatenate((freqs, freqs), axis=-1)
  x1, x2 = x[..., : d // 2], x[..., d // 2:]
  rotated = jnp.concatenate((-x2, x1), axis=-1)
  return (x * jnp.cos(emb) + rotated * jnp.sin(emb)).astype(x.dtype)


class Rotate(_OnSequences):
  """The rotary position embedding as a layer (`rotate`), prints as `Rotate`.

  ```python
  tl.Rotate().apply({}, jnp.ones((1, 32, 64)))
  ```
  """

  def forward(self, x):
    return rotate(jnp.asarray(x))

