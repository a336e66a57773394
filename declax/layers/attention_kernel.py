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

Which computation runs is decided once per attention call site at trace time, by
`select_attention_implementation` (a pure function of the platform, dtype, head size, dropout and
masks): cuDNN's flash attention on NVIDIA GPUs where its constraints hold, XLA's
`jax.nn.dot_product_attention` elsewhere, declax's formulation on CPU. `declax.summary` (and so
the `Loop`'s model summary) reports the choice, e.g. `attention: cudnn (GPU, bfloat16, causal)`.
A layer's `implementation='xla'`, `'cudnn'` or `'cpu'` overrides it.

```python
select_attention_implementation('gpu', 'bfloat16', 64, is_causal=True)
# AttentionChoice(implementation='cudnn', reason='GPU, bfloat16, causal')
```
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from declax.layers.dtypes import at_least_float32

IMPLEMENTATIONS = ("cudnn", "xla", "cpu")
_CUDNN_DTYPES = ("bfloat16", "float16")


class AttentionChoice(NamedTuple):
  """Which attention computation runs (`'cudnn'`, `'xla'` or `'cpu'`) and why."""

  implementation: str
  reason: str

  def __str__(self) -> str:
    return f"{self.implementation} ({self.reason})"


@functools.lru_cache(maxsize=256)
def select_attention_implementation(platform: str, dtype: Any, head_dim: int,
                                    dropout: float = 0.0, *, is_causal: bool = False,
                                    has_mask: bool = False, q_len: int | None = None,
                                    kv_len: int | None = None,
                                    compute_capability: str | None = None) -> AttentionChoice:
  """The attention computation for these shapes on `platform` (`jax.default_backend()`).

  - `'cudnn'` (`jax.nn.dot_product_attention(implementation='cudnn')`, flash attention) on an
    NVIDIA GPU when: no dropout, bfloat16/float16, head size a multiple of 8 up to 128 (256 from
    Hopper, compute capability 9.0), compute capability >= 8.0, and with a padding mask (passed
    to cuDNN as a bias) even query and key lengths.
  - `'cpu'`: declax's formulation (see the module docstring) on CPU without dropout.
  - `'xla'`: `jax.nn.dot_product_attention`'s XLA formulation otherwise (TPU, float32 GPU, ...);
    with dropout an explicit softmax (plain XLA ops) on every platform.

  A pure function of its arguments (cached), so tests can pass any platform.

  ```python
  select_attention_implementation('gpu', 'float32', 64)
  # AttentionChoice(implementation='xla', reason='GPU, float32: cuDNN flash attention needs ...')
  ```
  """
  dtype_name = np.dtype(dtype).name if dtype is not None else "float32"
  platform = platform.lower()
  label = {"cpu": "CPU", "gpu": "GPU", "cuda": "GPU", "rocm": "ROCm GPU", "tpu": "TPU"}.get(
      platform, platform)
  if dropout > 0.0:
    return AttentionChoice("xla", f"{label}, attention dropout {dropout:g}: explicit softmax")
  if platform == "cpu":
    return AttentionChoice("cpu", f"CPU, {dtype_name}: declax's formulation")
  if platform not in ("gpu", "cuda"):
    return AttentionChoice("xla", f"{label}, {dtype_name}: XLA")
  if dtype_name not in _CUDNN_DTYPES:
    return AttentionChoice("xla", f"GPU, {dtype_name}: cuDNN flash attention needs bfloat16 or "
                           "float16 (set config.dtype='bfloat16')")
  capability = None if compute_capability is None else tuple(
      int(part) for part in str(compute_capability).split(".")[:2])
  if capability is not None and capability < (8, 0):
    return AttentionChoice("xla", f"GPU compute capability {compute_capability} < 8.0: no cuDNN "
                           "flash attention")
  max_head = 256 if capability is not None and capability >= (9, 0) else 128
  if head_dim % 8 or head_dim > max_head:
    return AttentionChoice("xla", f"GPU, {dtype_name}, head size {head_dim}: cuDNN needs a "
                           f"multiple of 8 up to {max_head}")
  if has_mask and ((q_len or 0) % 2 or (kv_len or 0) % 2):
    return AttentionChoice("xla", f"GPU, {dtype_name}, padding mask with odd lengths "
                           f"({q_len}, {kv_len}): cuDNN needs even ones")
  masks = [m for m, on in (("causal", is_causal), ("padding mask", has_mask)) if on]
  return AttentionChoice("cudnn", f"GPU, {dtype_name}, {' + '.join(masks) or 'no mask'}")


_RECORDERS: list[list[AttentionChoice]] = []


@contextlib.contextmanager
def record_attention_choices() -> Iterator[list[AttentionChoice]]:
  """Collects the `AttentionChoice` of every attention traced inside (for summaries).

  ```python
  with record_attention_choices() as choices:
    jax.eval_shape(model.init, jax.random.key(0), tokens)
  ```
  """
  choices: list[AttentionChoice] = []
  _RECORDERS.append(choices)
  try:
    yield choices
  finally:
    _RECORDERS.remove(choices)


def _record(choice: AttentionChoice) -> AttentionChoice:
  for choices in _RECORDERS:
    if choice not in choices:
      choices.append(choice)
  return choice


def _choose(query: jax.Array, key: jax.Array, mask: jax.Array | None, is_causal: bool,
            dropout: float, implementation: str | None) -> AttentionChoice:
  if implementation is not None:
    if implementation not in IMPLEMENTATIONS:
      raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS} or None, "
                       f"got {implementation!r}")
    return AttentionChoice(implementation, "set by the layer's implementation=")
  platform = jax.default_backend()
  capability = None
  if platform == "gpu":
    capability = getattr(jax.devices()[0], "compute_capability", None)
  choice = select_attention_implementation(
      platform, query.dtype, query.shape[-1], dropout, is_causal=is_causal,
      has_mask=mask is not None, q_len=query.shape[1], kv_len=key.shape[1],
      compute_capability=capability)
  if choice.implementation == "cpu" and key.shape[-2] != query.shape[-2]:
    # declax's formulation has one key/value head per query head
    choice = AttentionChoice("xla", "CPU, grouped key/value heads: XLA")
  return choice


def dot_product_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                          mask: jax.Array | None = None, is_causal: bool = False,
                          dropout_rate: float = 0.0, dropout_rng: jax.Array | None = None,
                          implementation: str | None = None) -> jax.Array:
  """`softmax(q k^T / sqrt(d_head)) v` on `(batch, length, heads, d_head)` arrays.

  `mask` (True where a key may be attended to) broadcasts to `(batch, heads, T, S)`;
  `is_causal` also hides keys after each query (key `s` is visible to query `t` iff `s <= t`).
  Without dropout the computation is `select_attention_implementation`'s choice (or
  `implementation`'s: `'cpu'` is declax's formulation, `'xla'`/`'cudnn'` are
  `jax.nn.dot_product_attention`'s).
  With `dropout_rate > 0` the weights are computed explicitly (softmax in float32, masked logits
  filled like JAX does) and dropped out with `dropout_rng`, scaling the kept weights by
  `1 / (1 - rate)`.
  """
  if mask is not None and mask.dtype != jnp.bool_:
    mask = mask != 0
  dropout = dropout_rate if dropout_rng is not None else 0.0
  choice = _record(_choose(query, key, mask, is_causal, dropout, implementation))
  if dropout == 0.0:
    if choice.implementation == "cpu":
      # XLA:CPU has no fused attention kernel, and this formulation is ~15% faster there
      # (BENCHMARKS.md)
      blocks = _query_blocks(query.shape[1], key.shape[1], is_causal and mask is None)
      return _attention(query, key, value, mask, is_causal, blocks,
                        1.0 / float(np.sqrt(query.shape[-1])))
    if choice.implementation == "cudnn" and implementation is None:
      try:
        return _jax_attention(query, key, value, mask, is_causal, "cudnn")
      except (NotImplementedError, RuntimeError) as error:  # e.g. an older cuDNN: use XLA
        _record(AttentionChoice("xla", f"cuDNN refused: {str(error).splitlines()[0][:120]}"))
        implementation = "xla"
    return _jax_attention(query, key, value, mask, is_causal,
                          implementation or choice.implementation)
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


def _jax_attention(query, key, value, mask, is_causal, implementation):
  # JAX's XLA formulation mixes bf16 and float32 internally: standard promotion, so layers also
  # run where implicit promotion is an error (declax's tests)
  with jax.numpy_dtype_promotion("standard"):
    return jax.nn.dot_product_attention(query, key, value, mask=mask, is_causal=is_causal,
                                        implementation=implementation)


# ---- declax's attention: blocks of causal queries, and a backward pass that keeps only the weights

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
