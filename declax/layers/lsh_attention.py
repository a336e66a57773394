"""Trax's LSH attention (Reformer): `LSHSelfAttention` and the weightless `PureLSHSelfAttention`.

Queries (shared with keys) are hashed into buckets by random rotations (`n_hashes` rounds);
positions are sorted by (round, bucket, position), cut into chunks of `chunk_len`, and each
chunk attends to itself and `n_chunks_before` / `n_chunks_after` neighbours. A position never
attends to itself unless nothing else is visible (Trax's -1e5 self-mask), and the rounds are
combined by their softmax normalisers. Memory and time grow linearly with the length.

Random rotations: in `'train'` mode they are drawn afresh on every call from the `'hash'` PRNG
stream, or the `'dropout'` stream when there is no `'hash'` stream; in `'eval'` and `'predict'`
mode (and in train mode without either stream) they are fixed per layer (from `hash_seed` and
the layer's path), so the eval pass and token-by-token decoding hash alike. One set of
rotations per head, shared by the examples of a batch.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.errors import DeclaxError
from declax.layers.dtypes import promote_dtype
from declax.layers.efficient_attention import (
    EfficientAttentionBase,
    attend,
    check_chunks,
    length_normalized,
    mask_self_attention,
)
from declax.layers.predict_memory import PredictMemory

__all__ = ["BucketCountError", "LSHSelfAttention", "PureLSHSelfAttention", "hash_vecs"]


class BucketCountError(DeclaxError, ValueError):
  """An `n_buckets` that random-rotation hashing cannot make (odd, or not positive)."""


def _check_n_buckets(layer: str, n_buckets: int | Sequence[int] | None) -> None:
  if n_buckets is None or n_buckets == 1:
    return
  factors = [n_buckets] if isinstance(n_buckets, int) else list(n_buckets)
  for factor in factors:
    if not isinstance(factor, int) or factor < 2 or factor % 2:
      raise BucketCountError(
          f"{layer}: n_buckets={n_buckets!r}: each bucket count must be an even int >= 2 (a "
          "rotation of d/2 directions and their negatives gives an even count), or 1 for a "
          f"single bucket; use {max(2, int(factor) + 1 if isinstance(factor, int) else 2)}")


def hash_vecs(vecs: jax.Array, n_buckets_in: int | Sequence[int], n_hashes: int,
              rng: jax.Array) -> tuple[jax.Array, int]:
  """Trax's angular LSH: `vecs (..., L, d)` -> `(buckets (..., n_hashes, L), n_buckets)`.

  Each round rotates the vectors randomly (one rotation per round, drawn from `rng`, shared by
  the leading axes) and takes the argmax over the rotated coordinates and their negatives. A
  list `n_buckets_in` hashes hierarchically (the product of its factors is the bucket count);
  `n_buckets_in == 1` puts everything in bucket 0.

  ```python
  buckets, n = hash_vecs(jnp.ones((10, 8)), 4, n_hashes=2, rng=jax.random.PRNGKey(0))  # (2, 10)
  ```
  """
  factors = [n_buckets_in] if isinstance(n_buckets_in, int) else list(n_buckets_in)
  n_buckets = math.prod(factors)
  if n_buckets == 1:
    return jnp.zeros(vecs.shape[:-2] + (n_hashes, vecs.shape[-2]), jnp.int32), 1
  rot_size = sum(factors)
  rotations = jax.random.normal(rng, (vecs.shape[-1], n_hashes, rot_size // 2), jnp.float32)
  rotated = jnp.einsum("...td,dhb->...htb", vecs.astype(jnp.float32), rotations)
  buckets, offset, scale = 0, 0, 1
  for factor in factors:
    part = rotated[..., offset:offset + factor // 2]
    offset += factor // 2
    part = jnp.concatenate([part, -part], axis=-1)
    buckets = buckets + scale * jnp.argmax(part, axis=-1).astype(jnp.int32)
    scale *= factor
  return buckets, n_buckets


class LSHSelfAttention(EfficientAttentionBase):
  """Trax's LSH self-attention: `x -> y` (`(x, mask) -> y` when `masked`), shapes `(batch,
  length, d_model)`; queries and keys share weights (`w_q`, `w_v`, `w_o`).

  **Arguments (Trax's):** `n_heads`, `d_qk`, `d_v`, `causal`, `masked`, `chunk_len` (must
  divide the length: `ChunkLengthError`), `n_chunks_before`, `n_chunks_after`, `n_hashes`,
  `n_buckets` (even, a list of even factors, 1, or None: `2 * length // chunk_len`, factorised
  above 128 — computed from `max_length_for_buckets` when it is set, so that decoding hashes
  like the full pass), `mode`, `predict_mem_len`, `predict_drop_len` (decoding memory: the
  last `predict_mem_len` inputs; each new position attends to the
  `n_hashes * chunk_len * (1 + n_chunks_before)` most recent remembered positions that share a
  bucket with it, Trax's approximation of the full pass), `attention_dropout`,
  `output_dropout`, `max_length_for_buckets`, `bias`; `hash_seed` (declax: the fixed rotations).

  ```python
  layer = tl.LSHSelfAttention(n_heads=2, d_qk=8, d_v=8, causal=True, chunk_len=8, n_hashes=2,
                              n_buckets=4)
  variables = layer.init(jax.random.PRNGKey(0), x)          # x: (batch, 32, d_model)
  y = layer.apply(variables, x, rngs={'dropout': key})       # new rotations each call
  ```
  """

  share_qk: str = "unused"
  causal: bool = False
  masked: bool = False
  chunk_len: int = 128
  n_chunks_before: int = 1
  n_chunks_after: int = 0
  n_hashes: int = 1
  n_buckets: int | Sequence[int] | None = None
  predict_mem_len: int = 2048
  predict_drop_len: int = 256
  max_length_for_buckets: int | None = None
  bias: bool = False
  n_parallel_heads: int | None = 1
  hash_seed: int = 0

  _with_weights = True

  def __post_init__(self):
    name = type(self).__name__
    _check_n_buckets(name, self.n_buckets)
    if self.chunk_len < 1 or self.n_hashes < 1:
      raise ValueError(f"{name}: chunk_len and n_hashes must be >= 1, got {self.chunk_len} and "
                       f"{self.n_hashes}")
    if isinstance(self.n_buckets, list):
      object.__setattr__(self, "n_buckets", tuple(self.n_buckets))
    super().__post_init__()
    if self._incremental:
      self._memory()

  @property
  def n_in(self) -> int:
    return (2 if self.masked else 1) + (0 if self._with_weights else 1)

  @property
  def _incremental(self) -> bool:
    return self.mode == "predict" and self.causal

  def _memory(self) -> PredictMemory:
    return PredictMemory(type(self).__name__, self.predict_mem_len, self.predict_drop_len,
                         max_small_call=1)

  # -- hashing -------------------------------------------------------------------------------

  def _bucket_count(self, length: int) -> int | tuple:
    if self.n_buckets is not None:
      return self.n_buckets
    length = self.max_length_for_buckets or length
    n_buckets = 2 * max(1, length // self.chunk_len)
    if n_buckets <= 128:
      return n_buckets
    div = 2 ** math.ceil(math.log2(math.sqrt(n_buckets)))  # both factors even
    return (div, 2 * (n_buckets // (2 * div)))

  def _hash_rng(self) -> jax.Array:
    if self.mode == "train":
      for stream in ("hash", "dropout"):
        if self.has_rng(stream):
          return self.make_rng(stream)
    path = "/".join(str(p) for p in self.scope.path)
    return jax.random.fold_in(jax.random.PRNGKey(self.hash_seed), zlib.crc32(path.encode()))

  def _head_mask(self, mask: jax.Array) -> jax.Array:
    """A mask `(batch, L)` or per head `(batch, heads, L)` as bools `(batch, heads, L)`."""
    mask = mask.astype(bool)
    if mask.ndim == 2:
      mask = mask[:, None]
    return jnp.broadcast_to(mask, (mask.shape[0], self.n_heads, mask.shape[-1]))

  def _hash(self, q: jax.Array, mask: jax.Array | None, rng: jax.Array,
            length: int) -> jax.Array:
    """`q (batch, heads, L, d)` -> buckets `(batch, heads, n_hashes, L)`, with the rounds'
    buckets offset so they never collide (and padding in a bucket of its own)."""
    keys = jax.random.split(rng, self.n_heads)
    count = self._bucket_count(length)
    n_buckets = math.prod([count] if isinstance(count, int) else count)
    buckets = jax.vmap(lambda q_h, key: hash_vecs(q_h, count, self.n_hashes, key)[0],
                       in_axes=(1, 0), out_axes=1)(q, keys)
    if mask is not None:
      n_buckets += 1
      buckets = jnp.where(self._head_mask(mask)[:, :, None, :], buckets, n_buckets - 1)
    offsets = jnp.arange(self.n_hashes, dtype=jnp.int32)[None, None, :, None] * n_buckets
    return jax.lax.stop_gradient(buckets + offsets)

  # -- the full pass ---------------------------------------------------------------------------

  def _lsh_attend(self, q, v, mask, buckets, rng) -> jax.Array:
    """Sort by bucket, attend within chunks, unsort, combine the rounds. `q (b, h, L, d)`."""
    length = q.shape[-2]
    # Trax keeps the buckets in its state; declax sows them (apply(..., mutable=['intermediates'])).
    self.sow("intermediates", "buckets", buckets)
    buckets = buckets.reshape(buckets.shape[:2] + (-1,))
    ticker = jnp.arange(self.n_hashes * length, dtype=jnp.int32)[None, None, :]
    sticker = jnp.argsort(length * buckets + ticker % length, axis=-1)
    undo_sort = jnp.argsort(sticker, axis=-1)
    st = sticker % length
    sq = jnp.take_along_axis(q, st[..., None], axis=-2)
    sv = jnp.take_along_axis(v, st[..., None], axis=-2)
    kv_info = None
    if mask is not None:
      smask = jnp.take_along_axis(self._head_mask(mask), st, axis=-1)
      kv_info = jnp.where(smask, st, -st - 2)  # negative after attend's +1
    mask_fn = lambda d, qi, ki: mask_self_attention(  # noqa: E731
        d, qi, ki, causal=self.causal, exclude_self=True, masked=self.masked)
    so, slogits = attend(sq, None, sv, q_chunk_len=self.chunk_len,
                         n_chunks_before=self.n_chunks_before,
                         n_chunks_after=self.n_chunks_after, mask_fn=mask_fn, q_info=st,
                         kv_info=kv_info, dropout=self._rate(), rng=rng)
    o = jnp.take_along_axis(so, undo_sort[..., None], axis=-2)
    logits = jnp.take_along_axis(slogits, undo_sort, axis=-1)
    o = o.reshape(o.shape[:2] + (self.n_hashes, length, o.shape[-1]))
    logits = logits.reshape(logits.shape[:2] + (self.n_hashes, length, 1))
    probs = jnp.exp(logits - jax.nn.logsumexp(logits, axis=2, keepdims=True))
    o, probs = promote_dtype(o, probs)  # bfloat16 outputs, float32 weights: float32 (standard)
    return jnp.sum(o * probs, axis=2)

  def _rate(self) -> float:
    return self.attention_dropout if self.mode == "train" else 0.0

  # -- layer -----------------------------------------------------------------------------------

  def _qv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self._project(x, "w_q", self.d_qk, self.bias), self._project(x, "w_v", self.d_v,
                                                                          self.bias)

  @nn.compact
  def forward(self, x, mask=None):
    chex.assert_rank(x, 3, custom_message=f"{type(self).__name__}: x must be (batch, length, "
                     "d_model)")
    if mask is not None:
      chex.assert_shape(mask, x.shape[:2], custom_message="mask must be (batch, length)")
    attend_rng, output_rng = self._dropout_rngs()
    hash_rng = self._hash_rng()
    d_model = x.shape[-1]
    if not self._incremental:
      self._check_length(x.shape[1])
      q, v = self._qv(x)
      o = self._lsh_attend(q, v, mask, self._hash(q, mask, hash_rng, x.shape[1]), attend_rng)
      return self._merge(o, d_model, output_rng).astype(x.dtype)
    memory = self._memory()
    items = (x,) if mask is None else (x, mask)
    kind, seq, q_start = memory.update(self, items)
    buckets = self.variable("cache", "buckets", jnp.zeros,
                            (x.shape[0], self.n_heads, self.n_hashes, self.predict_mem_len),
                            jnp.int32)
    if kind == "prefix":
      o, new_buckets = self._prefix(seq, memory, hash_rng, attend_rng)
    else:
      o, new_buckets = self._step(seq, q_start, memory.roll(buckets.value, axis=3), hash_rng,
                                  attend_rng)
    if not memory.initializing:
      buckets.value = new_buckets
    return memory.poison(self._merge(o, d_model, output_rng)).astype(x.dtype)

  def _check_length(self, length: int) -> None:
    check_chunks(type(self).__name__, length, self.chunk_len)
    if self.max_length_for_buckets and length > self.max_length_for_buckets:
      raise ValueError(f"{type(self).__name__}: length {length} exceeds max_length_for_buckets="
                       f"{self.max_length_for_buckets}")

  def _prefix(self, items, memory: PredictMemory, hash_rng, attend_rng):
    """A prefix at the start: the full pass over it (padded to whole chunks; causal, so the
    padding does not change the real positions); the memory keeps the buckets of its tail."""
    length = items[0].shape[1]
    padded = memory.pad_to(items, self.chunk_len)
    x, mask = padded[0], (padded[1] if self.masked else None)
    q, v = self._qv(x)
    buckets = self._hash(q, mask, hash_rng, self._decode_length())
    o = self._lsh_attend(q, v, mask, buckets, attend_rng)[:, :, :length]
    tail = buckets[..., memory.prefix_start:length]
    pad = self.predict_mem_len - tail.shape[-1]
    return o, jnp.pad(tail, [(0, 0)] * 3 + [(0, pad)])

  def _decode_length(self) -> int:
    return self.predict_mem_len

  def _step(self, seq, q_start, buckets, hash_rng, attend_rng):
    """One new position at `q_start` attends to the most recent remembered positions that
    share one of its buckets (Trax's decoding rule)."""
    mem = seq[0]
    mem_mask = seq[1] if self.masked else None
    w_q, b_q = self._weights("w_q", mem.shape[-1], self.d_qk, self.bias)
    w_v, b_v = self._weights("w_v", mem.shape[-1], self.d_v, self.bias)
    q = self._apply_weights(jax.lax.dynamic_slice_in_dim(mem, q_start, 1, axis=1), w_q, b_q)
    kv_index, kv_info, buckets = self._select(q, mem_mask, buckets, q_start, hash_rng)
    rows = jnp.take_along_axis(mem[:, None], kv_index[..., None], axis=2)
    k = length_normalized(self._apply_weights(rows, w_q, b_q))
    v = self._apply_weights(rows, w_v, b_v)
    return self._attend_selected(q, k, v, q_start, kv_info, attend_rng), buckets

  def _select(self, q, mem_mask, buckets, q_start, hash_rng):
    """Hashes the new query `q (b, h, 1, d)`, writes its buckets and picks the keys it sees:
    `(kv_index (b, h, n_keys), kv_info, buckets)`."""
    mem_len = buckets.shape[-1]
    if mem_mask is not None:
      mem_mask = self._head_mask(mem_mask)
    q_mask = None if mem_mask is None else jax.lax.dynamic_slice_in_dim(mem_mask, q_start, 1, 2)
    q_buckets = self._hash(q, q_mask, hash_rng, self._decode_length())  # (b, h, n_hashes, 1)
    buckets = jax.lax.dynamic_update_slice_in_dim(buckets, q_buckets, q_start, axis=3)
    valid = jnp.any(buckets == q_buckets, axis=2)                        # (b, h, mem_len)
    positions = jnp.arange(mem_len, dtype=jnp.int32)
    priority = jnp.where(positions > q_start, -(mem_len + positions), positions)
    priority = priority[None, None, :] + mem_len * valid.astype(jnp.int32)
    n_keys = min(self.n_hashes * self.chunk_len * (1 + self.n_chunks_before), mem_len)
    kv_index = jnp.argsort(priority, axis=-1)[..., -n_keys:]
    kv_info = kv_index
    if mem_mask is not None:
      kv_mask = jnp.take_along_axis(mem_mask, kv_index, axis=-1)
      kv_info = jnp.where(kv_mask, kv_index, -kv_index - 2)
    return kv_index, kv_info, buckets

  def _attend_selected(self, q, k, v, q_start, kv_info, rng) -> jax.Array:
    mask_fn = lambda d, qi, ki: mask_self_attention(  # noqa: E731
        d, qi, ki, causal=True, exclude_self=True, masked=True)
    o, _ = attend(q, k, v, mask_fn=mask_fn, q_info=jnp.reshape(q_start, (1,)), kv_info=kv_info,
                  dropout=self._rate(), rng=rng)
    return o


class PureLSHSelfAttention(LSHSelfAttention):
  """Trax's LSH attention without weights: `(qk, v) -> o` (`(qk, v, mask) -> o` when `masked`).

  `qk (batch * n_heads, length, d_qk)` and `v (batch * n_heads, length, d_v)` are per-head
  queries/keys and values, heads varying fastest (row `i` is head `i % n_heads`, as Trax
  flattens `(batch, n_heads)`); `mask (batch * n_heads, length)`. Output `(batch * n_heads,
  length, d_v)`. Same arguments and decoding memory (of `qk` and `v`) as `LSHSelfAttention`;
  no output dropout, as in Trax.

  ```python
  layer = tl.PureLSHSelfAttention(n_heads=2, causal=True, chunk_len=8, n_hashes=2, n_buckets=4)
  o = layer.apply({}, (qk, v))        # qk, v: (batch * 2, 32, d_head)
  ```
  """

  _with_weights = False

  @nn.compact
  def forward(self, qk, v, mask=None):
    chex.assert_rank((qk, v), 3, custom_message="PureLSHSelfAttention: qk and v must be "
                     "(batch * n_heads, length, d)")
    chex.assert_equal_shape_prefix((qk, v), 2, custom_message="qk and v rows/length")
    rows, length = qk.shape[:2]
    if rows % self.n_heads:
      raise ValueError(f"PureLSHSelfAttention: {rows} rows are not batch * n_heads with "
                       f"n_heads={self.n_heads}")
    if mask is not None:
      chex.assert_shape(mask, (rows, length), custom_message="mask must be (rows, length)")
    attend_rng, _ = self._dropout_rngs()
    hash_rng = self._hash_rng()
    heads = lambda x: None if x is None else x.reshape((-1, self.n_heads) + x.shape[1:])  # noqa: E731
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    if not self._incremental:
      self._check_length(length)
      q, vv, m = heads(qk), heads(v), heads(mask)
      o = self._lsh_attend(q, vv, m, self._hash(q, m, hash_rng, length), attend_rng)
      return flat(o).astype(v.dtype)
    memory = self._memory()
    items = (qk, v) if mask is None else (qk, v, mask)
    kind, seq, q_start = memory.update(self, items, names=("mem_qk", "mem_v", "mem_mask"))
    buckets = self.variable("cache", "buckets", jnp.zeros,
                            (rows // self.n_heads, self.n_heads, self.n_hashes,
                             self.predict_mem_len), jnp.int32)
    if kind == "prefix":
      padded = memory.pad_to(seq, self.chunk_len)
      q, vv = heads(padded[0]), heads(padded[1])
      m = heads(padded[2]) if self.masked else None
      new_buckets = self._hash(q, m, hash_rng, self._decode_length())
      o = self._lsh_attend(q, vv, m, new_buckets, attend_rng)[:, :, :length]
      tail = new_buckets[..., memory.prefix_start:length]
      new_buckets = jnp.pad(tail, [(0, 0)] * 3 + [(0, self.predict_mem_len - tail.shape[-1])])
    else:
      mem_qk, mem_v = heads(seq[0]), heads(seq[1])
      mem_mask = heads(seq[2]) if self.masked else None
      q = jax.lax.dynamic_slice_in_dim(mem_qk, q_start, 1, axis=2)
      kv_index, kv_info, new_buckets = self._select(
          q, mem_mask, memory.roll(buckets.value, axis=3), q_start, hash_rng)
      k = length_normalized(jnp.take_along_axis(mem_qk, kv_index[..., None], axis=2))
      vv = jnp.take_along_axis(mem_v, kv_index[..., None], axis=2)
      o = self._attend_selected(q, k, vv, q_start, kv_info, attend_rng)
    if not memory.initializing:
      buckets.value = new_buckets
    return memory.poison(flat(o)).astype(v.dtype)
