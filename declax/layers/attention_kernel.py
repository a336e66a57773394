"""The attention computation itself: `softmax(q k^T / sqrt(d_head)) v` on `(batch, length,
heads, d_head)` arrays, used by every layer in `declax.layers.attention`.

By default this is declax's own formulation, tuned where `jax.nn.dot_product_attention`'s generic
one is slow (on CPU its vmapped formulation copies the `(batch, heads, T, S)` weights into
another layout and masks the gradient with an extra pass):

- a hand-written backward pass (`jax.custom_vjp`) that keeps only the softmax weights;
- queries, keys and values transposed once to heads-major `(batch, heads, length, d_head)`, so
  the batched matmuls and block slices read contiguous rows;
- causal self-attention without a padding mask split into blocks of >= 128 queries, each reading
  only the keys up to its last query (a quarter to three eighths fewer attention FLOPs).

`implementation='xla'` or `'cudnn'` hands the computation to `jax.nn.dot_product_attention`
(e.g. cuDNN's flash attention on GPUs).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from declax.layers.dtypes import at_least_float32

__all__: list[str] = []  # used through declax.layers.attention


def dot_product_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                          mask: jax.Array | None = None, is_causal: bool = False,
                          dropout_rate: float = 0.0, dropout_rng: jax.Array | None = None,
                          implementation: str | None = None) -> jax.Array:
  """`softmax(q k^T / sqrt(d_head)) v` on `(batch, length, heads, d_head)` arrays.

  `mask` (True where a key may be attended to) broadcasts to `(batch, heads, T, S)`;
  `is_causal` also hides keys after each query (key `s` is visible to query `t` iff `s <= t`).
  Without dropout and with `implementation=None`, on CPU this is declax's formulation
  (`_attention`), elsewhere `jax.nn.dot_product_attention`; `implementation='xla'`/`'cudnn'`
  always calls `jax.nn.dot_product_attention` with it.
  With `dropout_rate > 0` the weights are computed explicitly (softmax in float32, masked logits
  filled like JAX does) and dropped out with `dropout_rng`, scaling the kept weights by
  `1 / (1 - rate)`.
  """
  if mask is not None and mask.dtype != jnp.bool_:
    mask = mask != 0
  if dropout_rate == 0.0 or dropout_rng is None:
    # XLA:CPU has no fused attention kernel, and this formulation is ~15% faster there
    # (BENCHMARKS.md); on GPU/TPU jax.nn.dot_product_attention picks the platform's kernels.
    if (implementation is None and key.shape[-2] == query.shape[-2]
        and jax.default_backend() == "cpu"):
      blocks = _query_blocks(query.shape[1], key.shape[1], is_causal and mask is None)
      return _attention(query, key, value, mask, is_causal, blocks,
                        1.0 / float(np.sqrt(query.shape[-1])))
    return jax.nn.dot_product_attention(query, key, value, mask=mask, is_causal=is_causal,
                                        implementation=implementation)
  logits_dtype = at_least_float32(query)
  logits = jnp.einsum("btnh,bsnh->bnts", query, key, preferred_element_type=logits_dtype)
  logits = logits * jnp.asarray(1.0 / np.sqrt(query.shape[-1]), logits_dtype)
  keep = _visible(mask, is_causal, 0, logits.shape[-2], logits.shape[-1])
  if keep is not None:
    logits = jnp.where(keep, logits, _MASKED)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  kept = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
  weights = jnp.where(kept, weights / (1.0 - dropout_rate), 0.0).astype(value.dtype)
  return jnp.einsum("bnts,bsnh->btnh", weights, value)


# ------------------------------------------------------------------------------------------------
# declax's attention: blocks of causal queries, and a backward pass that keeps only the weights
# ------------------------------------------------------------------------------------------------

_MASKED = -0.7 * float(np.finfo(np.float32).max)  # what masked logits become, as in JAX
_MIN_BLOCK = 128  # causal attention over >= 2 blocks of this many queries skips masked keys


def _query_blocks(t: int, s: int, is_causal: bool) -> tuple[tuple[int, int, int], ...]:
  """`(first query, end query, end key)` of each block of queries.

  Causal self-attention over `t >= 2 * 128` positions is split into (at most 4) blocks of
  queries; block `i` only reads the keys up to its last query, so the keys that every query of
  the block would mask are never multiplied (1/4 to 3/8 fewer attention FLOPs). Only used
  without a padding mask: a query whose visible keys are all padding attends uniformly to
  every key (as in `jax.nn.dot_product_attention`), which a block cannot see.
  """
  if not is_causal or t != s or t < 2 * _MIN_BLOCK:
    return ((0, t, s),)
  size = max(_MIN_BLOCK, t // 4)
  if t % size:
    return ((0, t, s),)
  return tuple((start, start + size, start + size) for start in range(0, t, size))


def _visible(mask: jax.Array | None, is_causal: bool, t0: int, t1: int, s1: int):
  """Which keys `[0, s1)` queries `[t0, t1)` may see: a bool array, or None for all."""
  keep = None
  if is_causal:
    keep = jnp.asarray(np.arange(t0, t1)[:, None] >= np.arange(s1)[None, :])
  if mask is not None:
    if mask.shape[-2] != 1:
      mask = mask[..., t0:t1, :]
    if mask.shape[-1] != 1:
      mask = mask[..., :s1]
    if keep is not None:
      keep = jax.lax.broadcast_to_rank(keep, mask.ndim)
    keep = mask if keep is None else jnp.logical_and(mask, keep)
  return keep


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _attention(q, k, v, mask, is_causal, blocks, scale):
  """`softmax(scale * q k^T) v` (see `dot_product_attention`); the scale is applied to the
  logits, where XLA fuses it into the softmax."""
  return _attention_fwd(q, k, v, mask, is_causal, blocks, scale)[0]


def _heads_major(x: jax.Array) -> jax.Array:
  """`(batch, length, heads, d_head)` <-> `(batch, heads, length, d_head)`: one transpose up front
  lets every block's matmuls and slices work on contiguous rows."""
  return jnp.swapaxes(x, 1, 2)


def _attention_fwd(q, k, v, mask, is_causal, blocks, scale):
  q, k, v = _heads_major(q), _heads_major(k), _heads_major(v)
  outputs, weights = [], []
  for t0, t1, s1 in blocks:
    logits = jnp.einsum("bnth,bnsh->bnts", q[:, :, t0:t1], k[:, :, :s1],
                        preferred_element_type=jnp.float32) * scale
    keep = _visible(mask, is_causal, t0, t1, s1)
    if keep is not None:
      logits = jnp.where(keep, logits, _MASKED)
    w = jax.nn.softmax(logits, axis=-1)
    weights.append(w)
    outputs.append(jnp.einsum("bnts,bnsh->bnth", w.astype(v.dtype), v[:, :, :s1]))
  out = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=2)
  return _heads_major(out), (q, k, v, mask, tuple(weights))


def _attention_bwd(is_causal, blocks, scale, residuals, d_out):
  """Softmax backward from the stored weights: `ds = w * (dw - sum(dw * w))`. Under a causal
  mask alone the masked weights are exactly 0, so no mask is needed here; a padding mask can
  hide every key of a query (its weights are then uniform), so its masked entries are zeroed
  like the `where` in the forward pass would."""
  q, k, v, mask, weights = residuals  # heads-major
  f32 = jnp.float32
  d_out = _heads_major(d_out)
  d_queries, d_keys, d_values = [], [], []
  for (t0, t1, s1), w in zip(blocks, weights, strict=True):
    g = d_out[:, :, t0:t1]
    d_values.append(jnp.einsum("bnts,bnth->bnsh", w.astype(g.dtype), g,
                               preferred_element_type=f32))
    dw = jnp.einsum("bnth,bnsh->bnts", g, v[:, :, :s1], preferred_element_type=f32)
    ds = w * (dw - jnp.sum(dw * w, axis=-1, keepdims=True)) * scale
    if mask is not None:
      ds = jnp.where(_visible(mask, is_causal, t0, t1, s1), ds, 0.0)
    ds = ds.astype(q.dtype)
    d_queries.append(jnp.einsum("bnts,bnsh->bnth", ds, k[:, :, :s1],
                                preferred_element_type=f32))
    d_keys.append(jnp.einsum("bnts,bnth->bnsh", ds, q[:, :, t0:t1], preferred_element_type=f32))
  dq = d_queries[0] if len(d_queries) == 1 else jnp.concatenate(d_queries, axis=2)
  d_mask = None if mask is None else np.zeros(mask.shape, jax.dtypes.float0)
  return (_heads_major(dq).astype(q.dtype), _heads_major(_sum_prefixes(d_keys)).astype(k.dtype),
          _heads_major(_sum_prefixes(d_values)).astype(v.dtype), d_mask)


def _sum_prefixes(parts: list) -> jax.Array:
  """Sums `(batch, heads, length_i, d)` parts that cover the first `length_i` positions of the
  longest one (zero-padded adds, which XLA fuses into one pass)."""
  length = max(p.shape[2] for p in parts)
  padded = [p if p.shape[2] == length else
            jnp.pad(p, ((0, 0), (0, 0), (0, length - p.shape[2]), (0, 0))) for p in parts]
  total = padded[0]
  for p in padded[1:]:
    total = total + p
  return total


_attention.defvjp(_attention_fwd, _attention_bwd)
