"""Multi-head dot-product attention: self-attention with a padding mask, causal self-attention
with a KV cache for decoding, encoder-decoder attention, and the padding mask itself.

All attention layers share one parameter layout, laid out for tensor parallelism over heads:

```
query_kernel, key_kernel, value_kernel  (d_feature, n_heads, d_head)   ('embed', 'heads', 'kv')
query_bias,   key_bias,   value_bias    (n_heads, d_head)              ('heads', 'kv')
out_kernel                              (n_heads, d_head, d_feature)   ('heads', 'kv', 'embed')
out_bias                                (d_feature,)                   ('embed',)
```

(the same layout as `flax.linen.MultiHeadDotProductAttention`'s `query/key/value/out`
DenseGeneral kernels). Queries, keys and values are computed as `(batch, length, heads, d_head)`
and combined by `declax.layers.attention_kernel.dot_product_attention`: by default on CPU declax's
own formulation (a hand-written backward pass that stores only the softmax weights, and causal
attention without a padding mask computed in blocks of queries that skip the keys they would all
mask); on GPU/TPU, or with `implementation='xla'` or `'cudnn'` (cuDNN's flash attention), by
`jax.nn.dot_product_attention`. Dropout on the attention weights (`dropout > 0` in
`mode='train'`) takes an explicit softmax path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.attention_kernel import dot_product_attention
from declax.layers.base import Layer
from declax.layers.dtypes import promote_dtype
from declax.layers.partitioning import constrain, param_init


def _kw(default: Any) -> Any:
  return dataclasses.field(default=default, kw_only=True)


class _MultiHeadAttention(Layer):
  """Fields, parameters and computation shared by the attention layers."""

  passes_extra_items = True  # Trax builds these as a Serial

  d_feature: int
  n_heads: int = 1
  dropout: float = 0.0
  use_bias: bool = _kw(True)
  dtype: Any = _kw(None)
  param_dtype: Any = _kw(jnp.float32)
  qkv_kernel_initializer: Callable = _kw(nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2)))
  out_kernel_initializer: Callable = _kw(nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2))
  bias_initializer: Callable = _kw(nn.initializers.zeros)
  qkv_kernel_axes: tuple | None = _kw(("embed", "heads", "kv"))
  qkv_bias_axes: tuple | None = _kw(("heads", "kv"))
  out_kernel_axes: tuple | None = _kw(("heads", "kv", "embed"))
  out_bias_axes: tuple | None = _kw(("embed",))
  qkv_activation_axes: tuple | None = _kw(("batch", "length", "heads", "kv"))
  out_activation_axes: tuple | None = _kw(("batch", "length", "embed"))
  implementation: str | None = _kw(None)  # jax.nn.dot_product_attention's, e.g. 'cudnn'

  def __post_init__(self):
    if self.d_feature % self.n_heads:
      raise ValueError(f"{type(self).__name__}: d_feature={self.d_feature} is not divisible by "
                       f"n_heads={self.n_heads}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1), got {self.dropout}")
    super().__post_init__()

  @property
  def d_head(self) -> int:
    return self.d_feature // self.n_heads

  def _check_sequence(self, x: jax.Array, what: str) -> None:
    chex.assert_shape(x, (None, None, self.d_feature),
                      custom_message=f"{what} must be (batch, length, d_feature={self.d_feature})")

  def _check_mask(self, mask: jax.Array) -> None:
    chex.assert_rank(mask, 4, custom_message="mask must be 4-d, e.g. (batch, 1, 1, length) "
                     "from PaddingMask")

  def _project(self, x: jax.Array, name: str) -> jax.Array:
    """`x @ {name}_kernel + {name}_bias` as `(batch, length, heads, d_head)`."""
    shape = (self.d_feature, self.n_heads, self.d_head)
    initializer = param_init(self.qkv_kernel_initializer, self.qkv_kernel_axes)
    kernel = self.param(f"{name}_kernel", initializer, shape, self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param(f"{name}_bias", param_init(self.bias_initializer, self.qkv_bias_axes),
                        shape[1:], self.param_dtype)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jnp.einsum("btd,dnh->btnh", x, kernel)
    if bias is not None:
      y = y + jax.lax.broadcast_to_rank(bias, y.ndim)
    return constrain(y, self.qkv_activation_axes)

  def _output(self, y: jax.Array) -> jax.Array:
    """Merges the heads of `(batch, length, heads, d_head)` back to `(batch, length, d_feature)`."""
    shape = (self.n_heads, self.d_head, self.d_feature)
    kernel = self.param("out_kernel", param_init(self.out_kernel_initializer, self.out_kernel_axes),
                        shape, self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param("out_bias", param_init(self.bias_initializer, self.out_bias_axes),
                        shape[-1:], self.param_dtype)
    y, kernel, bias = promote_dtype(y, kernel, bias, dtype=self.dtype)
    out = jnp.einsum("btnh,nhd->btd", y, kernel)
    if bias is not None:
      out = out + jax.lax.broadcast_to_rank(bias, out.ndim)
    return constrain(out, self.out_activation_axes)

  def _attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
              is_causal: bool) -> jax.Array:
    if mask is not None and mask.dtype != jnp.bool_:
      mask = mask != 0
    rng = None
    if self.dropout > 0.0 and self.mode == "train":
      rng = self.make_rng("dropout")
    return dot_product_attention(q, k, v, mask=mask, is_causal=is_causal,
                                 dropout_rate=self.dropout, dropout_rng=rng,
                                 implementation=self.implementation)


class AttentionQKV(_MultiHeadAttention):
  """Attention of queries to keys/values, e.g. a decoder attending to its encoder.

  Takes `(queries, keys, values, mask)` and returns `(activations, mask)`: the mask passes
  through, as in Trax. In `'predict'` mode it behaves as in `'eval'` (keys and values are
  projected again on every call; there is no cache), so a decoder can feed the encoder's
  activations at each decoding step.

  **Arguments:** `d_feature` (model width; also the width of every input and of the output),
  `n_heads` (must divide `d_feature`), `dropout` (rate on the attention weights, train mode
  only), `mode`. Keyword-only: `use_bias`, `dtype`/`param_dtype`, initializers, axis names.

  **Inputs:** queries `(batch, T, d_feature)`, keys and values `(batch, S, d_feature)`, mask
  broadcastable to `(batch, n_heads, T, S)`, True (or nonzero) where a key may be attended to,
  e.g. `(batch, 1, 1, S)` from `PaddingMask`.

  **Returns:** `((batch, T, d_feature), mask)`.

  ```python
  layer = tl.AttentionQKV(d_feature=16, n_heads=4)
  mask = tl.PaddingMask()(encoder_tokens)                      # (batch, 1, 1, S)
  y, mask = layer.apply(variables, (decoder_x, encoder_x, encoder_x, mask))
  ```
  """

  mode: str = "train"

  n_in = 4
  n_out = 2

  def contract(self, queries, keys, values, mask):
    self._check_sequence(queries, "queries")
    self._check_sequence(keys, "keys")
    chex.assert_equal_shape((keys, values), custom_message="keys and values")
    chex.assert_equal_shape_prefix((queries, keys), 1, custom_message="batch size of queries/keys")
    self._check_mask(mask)

  @nn.compact
  def forward(self, queries, keys, values, mask):
    q = self._project(queries, "query")
    k = self._project(keys, "key")
    v = self._project(values, "value")
    return self._output(self._attend(q, k, v, mask, is_causal=False)), mask


class Attention(_MultiHeadAttention):
  """Self-attention with a padding mask: `(x, mask) -> (y, mask)`, as Trax's `Attention`.

  **Arguments:** `d_feature` (model width), `n_heads` (must divide `d_feature`), `dropout`
  (rate on the attention weights, train mode only), `mode` ('predict' acts like 'eval').

  **Inputs:** `x` of shape `(batch, length, d_feature)` and `mask` broadcastable to
  `(batch, n_heads, length, length)`, True where a key position may be attended to, e.g.
  `(batch, 1, 1, length)` from `PaddingMask`.

  **Returns:** `y` of shape `(batch, length, d_feature)` and the mask, unchanged.

  ```python
  layer = tl.Attention(16, n_heads=4)
  mask = tl.PaddingMask()(tokens)                       # (batch, 1, 1, length)
  y, mask = layer.apply(layer.init(rng, (x, mask)), (x, mask))
  ```
  """

  mode: str = "train"

  n_in = 2
  n_out = 2

  def contract(self, x, mask):
    self._check_sequence(x, "x")
    self._check_mask(mask)

  @nn.compact
  def forward(self, x, mask):
    q, k, v = (self._project(x, name) for name in ("query", "key", "value"))
    return self._output(self._attend(q, k, v, mask, is_causal=False)), mask


class CausalAttention(_MultiHeadAttention):
  """Causal self-attention: position `t` attends to positions `<= t`. `(batch, length, d) -> same`.

  In `'predict'` mode (autoregressive decoding) keys and values are kept in the `'cache'`
  collection: `cached_key` and `cached_value` of shape `(batch, max_inference_length, n_heads,
  d_head)` and the scalar int32 `cache_index` (the number of positions written so far). Each
  call with `T >= 1` new positions writes them at `cache_index`, lets them attend to every
  cached position up to their own, and advances `cache_index` by `T`; run it with
  `apply(..., mutable=['cache'])`. The outputs equal those of the full causal pass.

  Initializing a predict-mode model creates an empty cache (zeros, index 0) whose batch size
  is the batch size of the init input; the init input's length does not matter (`(batch, 1)`
  and `(batch, max_len)` inputs give the same cache), and init itself leaves the cache empty.
  Writing more than `max_inference_length` positions is not detected under `jit`: the writes
  would be clamped to the end of the cache.

  **Arguments:** `d_feature`, `n_heads` (must divide `d_feature`), `dropout` (rate on the
  attention weights, train mode only), `max_inference_length` (cache length), `mode`.

  ```python
  layer = tl.CausalAttention(16, n_heads=4, mode='predict', max_inference_length=32)
  variables = layer.init(rng, jnp.zeros((2, 1, 16)))
  y, state = layer.apply(variables, x[:, :1], mutable=['cache'])       # first position
  y, state = layer.apply({**variables, **state}, x[:, 1:2], mutable=['cache'])
  ```
  """

  max_inference_length: int = 2048
  mode: str = "train"

  def contract(self, x):
    self._check_sequence(x, "x")

  @nn.compact
  def forward(self, x):
    q, k, v = (self._project(x, name) for name in ("query", "key", "value"))
    if self.mode == "predict":
      y = self._decode(q, k, v)
    else:
      y = self._attend(q, k, v, None, is_causal=True)
    return self._output(y)

  def _decode(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    batch, length, n_heads, d_head = k.shape
    size = self.max_inference_length
    if length > size:
      raise ValueError(f"CausalAttention: {length} positions do not fit in the cache of "
                       f"max_inference_length={size}")
    shape = (batch, size, n_heads, d_head)
    is_initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, k.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, shape, v.dtype)
    index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    if not is_initialized:
      return self._attend(q, k, v, None, is_causal=True)
    chex.assert_shape(cached_key.value, shape, exception_type=ValueError, custom_message=(
        f"CausalAttention: the cache holds keys of shape {cached_key.value.shape}, but this "
        f"call's keys need {shape} (was the model initialized with another batch size?)"))
    start = index.value
    cached_key.value = jax.lax.dynamic_update_slice(
        cached_key.value, k.astype(cached_key.value.dtype), (0, start, 0, 0))
    cached_value.value = jax.lax.dynamic_update_slice(
        cached_value.value, v.astype(cached_value.value.dtype), (0, start, 0, 0))
    index.value = start + length
    positions = start + jnp.arange(length)
    mask = jnp.arange(size)[None, :] <= positions[:, None]  # (length, size)
    keys = constrain(cached_key.value.astype(q.dtype), self.qkv_activation_axes)
    values = constrain(cached_value.value.astype(q.dtype), self.qkv_activation_axes)
    return self._attend(q, keys, values, mask[None, None], is_causal=False)


class PaddingMask(Layer):
  """Token ids `(batch, length)` -> attention mask `(batch, 1, 1, length)`, True where id != pad.

  ```python
  tl.PaddingMask()(jnp.array([[5, 3, 0]]))   # [[[[True, True, False]]]]
  ```
  """

  pad: int = 0

  @property
  def default_label(self) -> str:
    return f"PaddingMask({self.pad})"

  def contract(self, x):
    chex.assert_rank(x, 2, custom_message="PaddingMask expects token ids (batch, length)")

  def forward(self, x):
    return (x != self.pad)[:, None, None, :]
