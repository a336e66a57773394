"""Trax's chunked dot-product attention as functions: `attend` with position "infos" and masks.

Queries, keys and values carry an integer info (their position) from which masks are computed
chunk by chunk, so no `(length, length)` mask is ever built. All functions are batched over any
leading axes (examples, heads). The layers live in `efficient_attention.py` and
`lsh_attention.py`.

```python
out, logsumexp = attend(q, None, v, q_chunk_len=16, n_chunks_before=1,
                        mask_fn=functools.partial(mask_self_attention, causal=True))
```
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from declax.errors import DeclaxError

__all__ = ["ChunkLengthError", "attend", "broadcasted_dropout", "check_chunks",
           "length_normalized", "look_adjacent", "mask_self_attention"]


class ChunkLengthError(DeclaxError, ValueError):
  """A sequence length that `chunk_len` does not divide."""


# ------------------------------------------------------------------------------------------------
# Functions (batched over any leading axes)
# ------------------------------------------------------------------------------------------------


def length_normalized(x: jax.Array, epsilon: float = 1e-6) -> jax.Array:
  """`x` divided by its root mean square over the last axis (Trax's shared-QK key norm)."""
  variance = jnp.mean(x**2, axis=-1, keepdims=True)
  return x / jnp.sqrt(variance + epsilon)


def look_adjacent(x: jax.Array, n_chunks_before: int, n_chunks_after: int,
                  axis: int = -3) -> jax.Array:
  """Chunks `(..., n_chunks, chunk_len, ...)` (chunk axis `axis`) -> each chunk followed by its
  neighbours along axis `axis + 1`, wrapping around: `(..., n_chunks, N * chunk_len, ...)`
  with `N = 1 + n_chunks_before + n_chunks_after`.

  ```python
  look_adjacent(jnp.arange(6).reshape(3, 2), 1, 0, axis=0)   # [[0 1 4 5] [2 3 0 1] [4 5 2 3]]
  ```
  """
  if n_chunks_before == 0 and n_chunks_after == 0:
    return x
  axis = axis % x.ndim
  parts = [jnp.roll(x, -i, axis=axis) for i in range(-n_chunks_before, n_chunks_after + 1)]
  return jnp.concatenate(parts, axis=axis + 1)


def mask_self_attention(dots: jax.Array, q_info: jax.Array, kv_info: jax.Array,
                        causal: bool = True, exclude_self: bool = True,
                        masked: bool = False) -> jax.Array:
  """Trax's additive masks: -1e9 on the future (`causal`), -1e5 on oneself (`exclude_self`,
  so a query with nothing else to attend to still attends to itself), -1e9 on keys whose info
  is negative (`masked`, padding)."""
  q_info = q_info.astype(jnp.float32)
  kv_info = kv_info.astype(jnp.float32)
  if causal:
    dots = dots - 1e9 * (q_info < kv_info).astype(dots.dtype)
  if exclude_self:
    dots = dots - 1e5 * (q_info == kv_info).astype(dots.dtype)
  if masked:
    dots = dots - 1e9 * (kv_info < 0).astype(dots.dtype)
  return dots


def _chunk(x: jax.Array, chunk_len: int | None, axis: int) -> jax.Array:
  if chunk_len is None:  # one chunk: a new axis of size 1 before the length axis
    return jnp.expand_dims(x, axis - 1 if axis < 0 else axis)
  axis = axis % x.ndim
  return x.reshape(x.shape[:axis] + (-1, chunk_len) + x.shape[axis + 1:])


def attend(q: jax.Array, k: jax.Array | None, v: jax.Array, *, q_chunk_len: int | None = None,
           kv_chunk_len: int | None = None, n_chunks_before: int = 0, n_chunks_after: int = 0,
           mask_fn: Callable | None = None, q_info: jax.Array | None = None,
           kv_info: jax.Array | None = None, dropout: float = 0.0,
           rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Dot-product attention with optional chunking and info-based masking (Trax's `attend`).

  **Arguments:** `q (..., Lq, d_qk)`; `k (..., Lk, d_qk)` or None to share keys with queries
  (then keys are `length_normalized(q)`); `v (..., Lk, d_v)`; `q_info`/`kv_info` (0-based
  positions, broadcastable to `(..., L)`; default `arange`); `mask_fn(dots, q_info, kv_info)`.
  Dropout on the attention weights uses one mask shared by every chunk, head and example.

  **Returns:** `(out (..., Lq, d_v), logsumexp (..., Lq))` — the softmax normaliser, which
  multi-round LSH attention uses to combine its rounds.

  ```python
  out, lse = attend(q, k, v, mask_fn=functools.partial(mask_self_attention, exclude_self=False))
  ```
  """
  share_qk = k is None
  # Infos become 1-based so that a negative info can mark padding even at position 0.
  q_info = (jnp.arange(q.shape[-2], dtype=jnp.int32) if q_info is None else q_info) + 1
  if kv_info is None:
    kv_info = q_info if share_qk else jnp.arange(v.shape[-2], dtype=jnp.int32) + 1
  else:
    kv_info = kv_info + 1
  if share_qk:
    kv_chunk_len = q_chunk_len
    k = length_normalized(q)
  if (q_chunk_len is None) != (kv_chunk_len is None):
    raise ValueError("attend: give both q_chunk_len and kv_chunk_len, or neither")
  if q_chunk_len is None and (n_chunks_before or n_chunks_after):
    raise ValueError("attend: n_chunks_before/after need chunking (q_chunk_len)")
  lead = q.shape[:-2]
  q_info = jnp.broadcast_to(q_info, lead + q.shape[-2:-1])
  kv_info = jnp.broadcast_to(kv_info, lead + v.shape[-2:-1])
  q, q_info = _chunk(q, q_chunk_len, -2), _chunk(q_info, q_chunk_len, -1)
  k, v = _chunk(k, kv_chunk_len, -2), _chunk(v, kv_chunk_len, -2)
  kv_info = _chunk(kv_info, kv_chunk_len, -1)
  k = k / jnp.sqrt(jnp.asarray(k.shape[-1], k.dtype))
  k = look_adjacent(k, n_chunks_before, n_chunks_after, axis=-3)
  v = look_adjacent(v, n_chunks_before, n_chunks_after, axis=-3)
  kv_info = look_adjacent(kv_info, n_chunks_before, n_chunks_after, axis=-2)
  # Scores, masks and softmax in float32 even for bfloat16 inputs: the -1e5 self-mask and the
  # combination of hash rounds near it need float32's precision.
  dots = jnp.einsum("...qd,...kd->...qk", q, k, preferred_element_type=jnp.float32)
  if mask_fn is not None:
    dots = mask_fn(dots, q_info[..., :, None], kv_info[..., None, :])
  logsumexp = jax.nn.logsumexp(dots, axis=-1, keepdims=True)
  probs = jnp.exp(dots - logsumexp)
  if dropout > 0.0:
    keep = jax.random.bernoulli(rng, 1.0 - dropout, probs.shape[-2:])
    keep = jax.lax.broadcast_to_rank(keep.astype(probs.dtype) / (1.0 - dropout), probs.ndim)
    probs = probs * keep
  out = jnp.einsum("...qk,...kd->...qd", probs.astype(v.dtype), v)
  out = out.reshape(lead + (-1, out.shape[-1]))
  return out, logsumexp.reshape(lead + (-1,))


def broadcasted_dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Dropout with one mask over the last axis, shared by all other axes (Trax's output dropout)."""
  if rate <= 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape[-1:])
  return x * jax.lax.broadcast_to_rank(keep.astype(x.dtype) / (1.0 - rate), x.ndim)


def check_chunks(layer: str, length: int, chunk_len: int | None, what: str = "sequence") -> None:
  """Raises `ChunkLengthError` unless `chunk_len` divides `length`."""
  if chunk_len is not None and length % chunk_len:
    fit = math.ceil(length / chunk_len) * chunk_len
    raise ChunkLengthError(
        f"{layer}: {what} length {length} is not a multiple of chunk_len={chunk_len}; pad the "
        f"inputs to {fit} (e.g. with PadToLength) or choose a chunk_len that divides {length}")
