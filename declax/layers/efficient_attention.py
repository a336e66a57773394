"""Trax's memory-efficient attention: chunked `SelfAttention` and `EncDecAttention`.

Attention is computed by `declax.layers.chunked_attend.attend` (masks from positions, chunk by
chunk; no `(length, length)` mask is ever built). With `chunk_len`, the sequence is
cut into chunks and each chunk attends to itself plus `n_chunks_before` / `n_chunks_after`
neighbouring chunks (wrapping around at the ends, as in Trax; causal masking removes the wrapped
ones). Weights are per head, in Trax's layout:

```
w_q, w_k  (n_heads, d_model, d_qk)   w_v  (n_heads, d_model, d_v)   w_o  (n_heads, d_v, d_model)
b_q, b_k  (n_heads, d_qk)            b_v  (n_heads, d_v)            (biases only with bias=True)
```

In `'predict'` mode causal layers remember their last `predict_mem_len` inputs in the `'cache'`
collection (`mem`, `mem_end`; see `declax.layers.predict_memory`) so that decoding token by
token equals the full forward pass. LSH attention lives in `declax.layers.lsh_attention`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer, constrain, param_init
from declax.layers.chunked_attend import (
    ChunkLengthError,
    attend,
    broadcasted_dropout,
    check_chunks,
    length_normalized,
    look_adjacent,
    mask_self_attention,
)
from declax.layers.dtypes import promote_dtype
from declax.layers.predict_memory import PredictMemory

__all__ = ["ChunkLengthError", "EncDecAttention", "SelfAttention", "attend", "length_normalized",
           "look_adjacent", "mask_self_attention"]


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------


def head_initializer(d_model: int, d_head: int, n_heads: int) -> Callable:
  """Trax's Glorot-uniform over the total width of all heads: U(+-sqrt(6 / (d_model + d_head *
  n_heads))), for one head's `(d_model, d_head)` kernel stacked over heads."""
  limit = math.sqrt(6.0 / (d_model + d_head * n_heads))

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def _kw(default: Any) -> Any:
  return dataclasses.field(default=default, kw_only=True)


class EfficientAttentionBase(Layer):
  """Fields and per-head projections shared by the efficient attention layers."""

  n_heads: int = 2
  d_qk: int = 64
  d_v: int = 64
  mode: str = "train"
  attention_dropout: float = 0.0
  output_dropout: float = 0.0
  n_parallel_heads: int | None = None   # accepted for Trax; declax runs all heads at once
  use_python_loop: bool = False         # accepted for Trax; no effect
  use_reference_code: bool = False      # accepted for Trax; no effect (one implementation)
  dtype: Any = _kw(None)
  param_dtype: Any = _kw(jnp.float32)
  kernel_axes: tuple | None = _kw(("heads", "embed", "kv"))
  out_kernel_axes: tuple | None = _kw(("heads", "kv", "embed"))
  bias_axes: tuple | None = _kw(("heads", "kv"))
  activation_axes: tuple | None = _kw(("batch", "heads", "length", "kv"))

  def __post_init__(self):
    name = type(self).__name__
    for field in ("attention_dropout", "output_dropout"):
      if not 0.0 <= getattr(self, field) < 1.0:
        raise ValueError(f"{name}: {field} must be in [0, 1), got {getattr(self, field)}")
    if self.n_parallel_heads:
      n, p = self.n_heads, self.n_parallel_heads
      if (p > n and p % n) or (p < n and n % p):
        raise ValueError(f"{name}: n_parallel_heads={p} must be a multiple or a divisor of "
                         f"n_heads={n}")
    super().__post_init__()

  def _dropout_rngs(self) -> tuple[jax.Array | None, jax.Array | None]:
    """One key for the attention weights and one for the output, shared by all heads (Trax)."""
    if self.mode != "train" or (self.attention_dropout == 0.0 and self.output_dropout == 0.0):
      return None, None
    attend_rng, output_rng = jax.random.split(self.make_rng("dropout"))
    return attend_rng, output_rng

  def _kernel(self, name: str, d_in: int, d_out: int, d_model: int) -> jax.Array:
    d_head = d_in if name == "w_o" else d_out
    axes = self.out_kernel_axes if name == "w_o" else self.kernel_axes
    init = param_init(head_initializer(d_model, d_head, self.n_heads), axes)
    return self.param(name, init, (self.n_heads, d_in, d_out), self.param_dtype)

  def _weights(self, name: str, d_model: int, d_out: int,
               bias: bool = False) -> tuple[jax.Array, jax.Array | None]:
    """Head kernel `(n_heads, d_model, d_out)` `name` and, with `bias`, its bias."""
    kernel = self._kernel(name, d_model, d_out, d_model)
    b = None
    if bias:
      b = self.param(f"b_{name[-1]}", param_init(nn.initializers.zeros, self.bias_axes),
                     (self.n_heads, d_out), self.param_dtype)
    return kernel, b

  def _apply_weights(self, x: jax.Array, kernel: jax.Array, b: jax.Array | None) -> jax.Array:
    """`x (batch, L, d)` (shared by the heads) or `(batch, n_heads, L, d)` (one per head) ->
    `(batch, n_heads, L, d_out)`."""
    x, kernel, b = promote_dtype(x, kernel, b, dtype=self.dtype)
    spec = "bld,hde->bhle" if x.ndim == 3 else "bhld,hde->bhle"
    y = jnp.einsum(spec, x, kernel)
    if b is not None:
      y = y + b[None, :, None, :]
    return constrain(y, self.activation_axes)

  def _project(self, x: jax.Array, name: str, d_out: int, bias: bool = False) -> jax.Array:
    """`x (batch, L, d_model)` -> `(batch, n_heads, L, d_out)` with head `name`'s kernel."""
    return self._apply_weights(x, *self._weights(name, x.shape[-1], d_out, bias))

  def _merge(self, o: jax.Array, d_model: int, output_rng: jax.Array | None) -> jax.Array:
    """Per-head outputs `(batch, n_heads, L, d_v)` -> `(batch, L, d_model)`, summed over heads."""
    kernel = self._kernel("w_o", o.shape[-1], d_model, d_model)
    o, kernel = promote_dtype(o, kernel, dtype=self.dtype)
    out = jnp.einsum("bhle,hed->bld", o, kernel)
    return broadcasted_dropout(out, self.output_dropout if output_rng is not None else 0.0,
                               output_rng)


# ------------------------------------------------------------------------------------------------
# SelfAttention
# ------------------------------------------------------------------------------------------------


class SelfAttention(EfficientAttentionBase):
  """Trax's memory-efficient self-attention, optionally chunked: `x -> y` (`(x, mask) -> y` when
  `masked`), shapes `(batch, length, d_model)`; `mask (batch, length)` is True on real tokens.

  **Arguments (Trax's):** `n_heads`, `d_qk`, `d_v`; `share_qk` (keys are the length-normalised
  queries, and a position attends to itself only when nothing else is visible); `causal`;
  `masked`; `chunk_len` (None: one chunk; else it must divide the length, see
  `ChunkLengthError`), `n_chunks_before`, `n_chunks_after`; `bias`; `mode`;
  `predict_mem_len`/`predict_drop_len` (decoding memory: defaults `chunk_len * (1 +
  n_chunks_before)` and `chunk_len`; without `chunk_len` give `predict_mem_len`, and leave
  `predict_drop_len=None` to make running past the memory an error instead of Trax's sliding
  window); `attention_dropout` (one mask shared by all heads and chunks), `output_dropout` (one
  mask over the features). In `'predict'` mode a non-causal layer behaves as in `'eval'`.

  ```python
  layer = tl.SelfAttention(n_heads=2, d_qk=8, d_v=8, causal=True, chunk_len=4, n_chunks_before=1)
  variables = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 32)))
  y = layer.apply(variables, x)                             # (1, 16, 32)
  ```
  """

  share_qk: bool = False
  causal: bool = False
  masked: bool = False
  chunk_len: int | None = None
  n_chunks_before: int = 0
  n_chunks_after: int = 0
  bias: bool = False
  predict_mem_len: int | None = None
  predict_drop_len: int | None = None

  def __post_init__(self):
    if self.chunk_len is not None and self.chunk_len < 1:
      raise ValueError(f"SelfAttention: chunk_len must be a positive int or None, got "
                       f"{self.chunk_len}")
    if self.chunk_len is None and (self.n_chunks_before or self.n_chunks_after):
      raise ValueError("SelfAttention: n_chunks_before/n_chunks_after need a chunk_len")
    super().__post_init__()
    if self._incremental:
      self._memory()  # validates predict_mem_len / predict_drop_len at construction

  @property
  def n_in(self) -> int:
    return 2 if self.masked else 1

  @property
  def _incremental(self) -> bool:
    return self.mode == "predict" and self.causal

  def _memory(self) -> PredictMemory:
    mem_len, drop_len = self.predict_mem_len, self.predict_drop_len
    if self.chunk_len is not None:
      mem_len = mem_len or self.chunk_len * (1 + self.n_chunks_before)
      drop_len = drop_len or self.chunk_len
    memory = PredictMemory(type(self).__name__, mem_len, drop_len)
    # Calls of up to predict_drop_len positions go through the memory; longer ones are
    # prefixes (Trax's rule).
    memory.max_small_call = min(drop_len or mem_len, mem_len - 1)
    return memory

  @nn.compact
  def forward(self, x, mask=None):
    chex.assert_rank(x, 3, custom_message=f"{type(self).__name__}: x must be (batch, length, "
                     "d_model)")
    if mask is not None:
      chex.assert_shape(mask, x.shape[:2], custom_message="mask must be (batch, length)")
    attend_rng, output_rng = self._dropout_rngs()
    if not self._incremental:
      check_chunks(type(self).__name__, x.shape[1], self.chunk_len)
      o = self._attend_sequence(x, mask, attend_rng)
      return self._merge(o, x.shape[-1], output_rng).astype(x.dtype)
    items = (x,) if mask is None else (x, mask)
    memory = self._memory()
    kind, seq, q_start = memory.update(self, items)
    if kind == "prefix":
      # A prefix at the start: the full computation, padded to whole chunks (causal, so the
      # padding at the end does not change the real positions).
      padded = memory.pad_to(seq, self.chunk_len)
      o = self._attend_sequence(padded[0], padded[1] if self.masked else None, attend_rng)
      o = o[:, :, :x.shape[1]]
    else:
      o = self._attend_memory(seq[0], seq[1] if self.masked else None, q_start, x.shape[1],
                              attend_rng)
    out = self._merge(o, x.shape[-1], output_rng)
    return memory.poison(out).astype(x.dtype)

  def _qkv(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    q = self._project(x, "w_q", self.d_qk, self.bias)
    k = None if self.share_qk else self._project(x, "w_k", self.d_qk, self.bias)
    v = self._project(x, "w_v", self.d_v, self.bias)
    return q, k, v

  def _kv_info(self, length: int, mask: jax.Array | None) -> jax.Array:
    positions = jnp.arange(length, dtype=jnp.int32)
    if mask is None:
      return positions
    # Padding gets a negative info (after attend's +1): -position - 1 <= -1.
    positions = positions[None, :]
    return jnp.where(mask.astype(bool), positions, -positions - 2)[:, None, :]

  def _mask_fn(self) -> Callable:
    return lambda dots, qi, ki: mask_self_attention(
        dots, qi, ki, causal=self.causal, exclude_self=self.share_qk, masked=self.masked)

  def _attend_sequence(self, x, mask, rng) -> jax.Array:
    q, k, v = self._qkv(x)
    length = x.shape[1]
    o, _ = attend(q, k, v, q_chunk_len=self.chunk_len, kv_chunk_len=self.chunk_len,
                  n_chunks_before=self.n_chunks_before, n_chunks_after=self.n_chunks_after,
                  mask_fn=self._mask_fn(), q_info=jnp.arange(length, dtype=jnp.int32),
                  kv_info=self._kv_info(length, mask), dropout=self._rate(), rng=rng)
    return o

  def _attend_memory(self, mem, mem_mask, q_start, q_len, rng) -> jax.Array:
    """New queries at `[q_start, q_start + q_len)` of the memory attend to all of it (causal
    masking by position in the memory hides what is not written yet)."""
    q_all = self._project(mem, "w_q", self.d_qk, self.bias)
    q = jax.lax.dynamic_slice_in_dim(q_all, q_start, q_len, axis=2)
    if self.share_qk:
      k = length_normalized(q_all)
    else:
      k = self._project(mem, "w_k", self.d_qk, self.bias)
    v = self._project(mem, "w_v", self.d_v, self.bias)
    q_info = q_start + jnp.arange(q_len, dtype=jnp.int32)
    o, _ = attend(q, k, v, mask_fn=self._mask_fn(), q_info=q_info,
                  kv_info=self._kv_info(mem.shape[1], mem_mask), dropout=self._rate(), rng=rng)
    return o

  def _rate(self) -> float:
    return self.attention_dropout if self.mode == "train" else 0.0


# ------------------------------------------------------------------------------------------------
# EncDecAttention
# ------------------------------------------------------------------------------------------------


class EncDecAttention(EfficientAttentionBase):
  """Trax's memory-efficient encoder-decoder attention: `(queries, keys_values[, mask]) -> y`.

  `queries (batch, Lq, d_model)` from the decoder attend to `keys_values (batch, Lk, d_kv)` from
  the encoder; `mask (batch, Lk)` (True on real tokens) when `masked` (the default, as in Trax).
  Output `(batch, Lq, d_model)`. Each call projects the encoder's keys and values again, so in
  `'predict'` mode (decoding) it needs no memory and equals the full pass position by position.

  ```python
  layer = tl.EncDecAttention(n_heads=2, d_qk=8, d_v=8)
  variables = layer.init(jax.random.PRNGKey(0), (dec_x, enc_x, enc_mask))
  y = layer.apply(variables, (dec_x, enc_x, enc_mask))        # dec_x's shape
  ```
  """

  masked: bool = True

  @property
  def n_in(self) -> int:
    return 3 if self.masked else 2

  @nn.compact
  def forward(self, q_antecedent, kv_antecedent, mask=None):
    chex.assert_rank((q_antecedent, kv_antecedent), 3,
                     custom_message="EncDecAttention: inputs must be (batch, length, features)")
    chex.assert_equal_shape_prefix((q_antecedent, kv_antecedent), 1,
                                   custom_message="batch size of queries/keys_values")
    if mask is not None:
      chex.assert_shape(mask, kv_antecedent.shape[:2],
                        custom_message="mask must be (batch, keys_values length)")
    attend_rng, output_rng = self._dropout_rngs()
    d_model = q_antecedent.shape[-1]
    q = self._project(q_antecedent, "w_q", self.d_qk)
    k = self._project_kv(kv_antecedent, "w_k", self.d_qk, d_model)
    v = self._project_kv(kv_antecedent, "w_v", self.d_v, d_model)
    mask_fn = kv_info = None
    if mask is not None:
      kv_info = (~mask.astype(bool)).astype(jnp.int32)[:, None, :]  # 1 on padding

      def mask_fn(dots, q_info, kv_info):
        return dots - 1e9 * (kv_info > 1).astype(dots.dtype)  # attend added 1

    rate = self.attention_dropout if self.mode == "train" else 0.0
    o, _ = attend(q, k, v, mask_fn=mask_fn, kv_info=kv_info, dropout=rate, rng=attend_rng)
    return self._merge(o, d_model, output_rng).astype(q_antecedent.dtype)

  def _project_kv(self, x: jax.Array, name: str, d_out: int, d_model: int) -> jax.Array:
    kernel = self.param(name, param_init(head_initializer(d_model, d_out, self.n_heads),
                                         self.kernel_axes),
                        (self.n_heads, x.shape[-1], d_out), self.param_dtype)
    x, kernel = promote_dtype(x, kernel, dtype=self.dtype)
    return constrain(jnp.einsum("bld,hde->bhle", x, kernel), self.activation_axes)
