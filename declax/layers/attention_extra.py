"""Trax's attention building blocks: `SplitIntoHeads`, `MergeHeads`, `PureAttention`,
`DotProductCausalAttention`, `ConfigurableAttention` and `EncoderDecoderMask`.

These compute attention exactly as Trax's `_per_head_attention` does (scaled dot products,
masked with -1e9, softmax, optional dropout on the weights), so models assembled from them
match Trax's numbers.

```python
attention = tl.ConfigurableAttention(tl.Dense(8), tl.Dense(8), tl.Dense(8), tl.Dense(8),
                                     tl.DotProductCausalAttention(), n_heads=2)
```
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer, describe
from declax.layers.combinators import Branch, Serial
from declax.layers.dtypes import at_least_float32


def per_head_attention(layer: Layer, q, k, v, mask, dropout: float, mode: str):
  """Scaled dot-product attention of per-head `q (..., T, h)` to `k, v (..., S, h)`."""
  if dropout >= 1.0:
    raise ValueError(f"dropout rate ({dropout}) must be lower than 1")
  dots = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) / jnp.sqrt(q.shape[-1])
  if mask is not None:
    dots = jnp.where(jax.lax.broadcast_to_rank(mask, dots.ndim), dots, jnp.full_like(dots, -1e9))
  weights = jnp.exp(dots - jax.nn.logsumexp(dots, axis=-1, keepdims=True))
  if dropout > 0.0 and mode == "train":
    keep = jax.random.bernoulli(layer.make_rng("dropout"), 1.0 - dropout, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout), jnp.zeros_like(weights))
  return jnp.matmul(weights, v).astype(jnp.float32)


def _check_splittable(x, n_heads: int) -> None:
  chex.assert_rank(x, 3, exception_type=ValueError,
                   custom_message=f"expects (batch, length, d_feature), got {describe([x])}")
  chex.assert_is_divisible(x.shape[-1], n_heads, exception_type=ValueError, custom_message=(
      f"feature dimensionality ({x.shape[-1]}) is not a multiple of the requested number of "
      f"attention heads ({n_heads})"))


def _split(x, n_heads: int, merged: bool):
  batch, length, d_feature = x.shape
  x = x.reshape((batch, length, n_heads, d_feature // n_heads)).transpose((0, 2, 1, 3))
  return x.reshape((batch * n_heads, length, -1)) if merged else x


def _merge(x, n_heads: int, merged: bool):
  if merged:
    x = x.reshape((x.shape[0] // n_heads, n_heads) + x.shape[1:])
  batch, _, length, d_head = x.shape
  return x.transpose((0, 2, 1, 3)).reshape((batch, length, n_heads * d_head))


class SplitIntoHeads(Layer):
  """`(batch, length, d) -> (batch * n_heads, length, d / n_heads)` (or `(batch, n_heads,
  length, d / n_heads)` with `merged_batch_and_head=False`).

  ```python
  tl.SplitIntoHeads(2).apply({}, jnp.ones((3, 5, 8))).shape   # (6, 5, 4)
  ```
  """

  n_heads: int = 1
  merged_batch_and_head: bool = True

  def contract(self, x):
    _check_splittable(x, self.n_heads)

  def forward(self, x):
    return _split(x, self.n_heads, self.merged_batch_and_head)


class MergeHeads(Layer):
  """The inverse of `SplitIntoHeads`: `(batch * n_heads, length, d_head) -> (batch, length,
  n_heads * d_head)`.

  ```python
  tl.MergeHeads(2).apply({}, jnp.ones((6, 5, 4))).shape   # (3, 5, 8)
  ```
  """

  n_heads: int = 1
  merged_batch_and_head: bool = True

  def contract(self, x):
    if self.merged_batch_and_head:
      chex.assert_is_divisible(x.shape[0], self.n_heads, exception_type=ValueError,
                               custom_message=f"leading dimension ({x.shape[0]}) is not a "
                               f"multiple of the number of attention heads ({self.n_heads})")
    else:
      chex.assert_rank(x, 4, exception_type=ValueError, custom_message=(
          f"expects (batch, n_heads, length, d_head), got {describe([x])}"))

  def forward(self, x):
    return _merge(x, self.n_heads, self.merged_batch_and_head)


class PureAttention(Layer):
  """`(Q, K, V, mask) -> (activations, mask)`: multi-head attention without projections.

  Q/K/V are `(batch, length, d_feature)`, split into `n_heads` heads; `mask` broadcasts to
  `(batch, n_heads, T, S)` (True or nonzero where attending is allowed).

  ```python
  y, mask = tl.PureAttention(n_heads=2).apply({}, (q, k, v, mask))
  ```
  """

  n_heads: int = 1
  dropout: float = 0.0
  mode: str = "train"

  n_in = 4

  n_out = 2

  def contract(self, q, k, v, mask):
    for x in (q, k, v):
      _check_splittable(x, self.n_heads)

  def forward(self, q, k, v, mask):
    heads = [_split(x, self.n_heads, merged=False) for x in (q, k, v)]
    y = per_head_attention(self, *heads, mask, self.dropout, self.mode)
    return _merge(y, self.n_heads, merged=False), mask


class DotProductCausalAttention(Layer):
  """Causal attention of per-head `(queries, keys, values)` (heads already split, e.g. by
  `SplitIntoHeads`): position `t` attends to positions `<= t`.

  In `'predict'` mode keys and values are kept in the `'cache'` collection (`keys`, `values`
  of length `max_inference_length`, and `index`); apply with `mutable=['cache']`.

  ```python
  y = tl.DotProductCausalAttention().apply({}, (q, k, v))   # (batch*heads, T, d_head)
  ```
  """

  dropout: float = 0.0
  max_inference_length: int = 2048
  mode: str = "train"

  n_in = 3

  @nn.compact
  def forward(self, q, k, v):
    if self.mode != "predict":
      length = q.shape[-2]
      mask = jnp.tril(jnp.ones((1, length, length), jnp.bool_))
      return per_head_attention(self, q, k, v, mask, self.dropout, self.mode)
    size = self.max_inference_length
    keys = self.variable("cache", "keys", jnp.zeros, k.shape[:-2] + (size, k.shape[-1]), k.dtype)
    values = self.variable("cache", "values", jnp.zeros, v.shape[:-2] + (size, v.shape[-1]),
                           v.dtype)  # values may be wider or narrower than keys
    index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    if self.is_initializing():
      length = q.shape[-2]
      mask = jnp.tril(jnp.ones((1, length, length), jnp.bool_))
      return per_head_attention(self, q, k, v, mask, self.dropout, self.mode)
    start = index.value
    offsets = (0,) * (k.ndim - 2) + (start, 0)
    keys.value = jax.lax.dynamic_update_slice(keys.value, k.astype(keys.value.dtype), offsets)
    values.value = jax.lax.dynamic_update_slice(values.value, v.astype(values.value.dtype),
                                                offsets)
    index.value = start + q.shape[-2]
    positions = start + jnp.arange(q.shape[-2])
    mask = jnp.arange(size)[None, :] <= positions[:, None]
    return per_head_attention(self, q, keys.value, values.value, mask[None], self.dropout,
                              self.mode)


def ConfigurableAttention(q_layer: Layer, k_layer: Layer, v_layer: Layer,  # noqa: N802
                          final_layer: Layer, qkv_attention_layer: Layer,
                          n_heads: int = 1) -> Layer:
  """Multi-head self-attention from parts, as Trax's: copies of the input go through
  `q_layer`/`k_layer`/`v_layer` and `SplitIntoHeads`, then `qkv_attention_layer` (e.g.
  `DotProductCausalAttention`), `MergeHeads` and `final_layer`.

  ```python
  tl.ConfigurableAttention(tl.Dense(8), tl.Dense(8), tl.Dense(8), tl.Dense(8),
                           tl.DotProductCausalAttention(), n_heads=2)
  ```
  """
  return Serial(
      Branch([q_layer, SplitIntoHeads(n_heads)], [k_layer, SplitIntoHeads(n_heads)],
             [v_layer, SplitIntoHeads(n_heads)]),
      qkv_attention_layer,
      MergeHeads(n_heads),
      final_layer,
  )


class EncoderDecoderMask(Layer):
  """`(decoder_activations (b, T, d), encoder_mask (b, 1, 1, S)) -> mask (b, 1, T, S)` for
  encoder-decoder attention (float, 1 where the encoder position is content).

  ```python
  tl.EncoderDecoderMask().apply({}, (decoder_x, tl.PaddingMask()(tokens)))
  ```
  """

  n_in = 2

  def contract(self, decoder_input, mask):
    chex.assert_rank(decoder_input, 3, exception_type=ValueError, custom_message=(
        "decoder input to EncoderDecoderMask must be (batch_size, decoder_sequence_length, "
        f"d_model), got {describe([decoder_input])}"))

  def forward(self, decoder_input, mask):
    batch, source_length = mask.shape[0], mask.shape[-1]
    mask = mask.reshape((batch, 1, 1, source_length)).astype(at_least_float32(mask))
    return jnp.broadcast_to(mask, (batch, 1, decoder_input.shape[1], source_length))
