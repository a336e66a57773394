"""The encoder-decoder `Transformer`'s predict-mode caches of everything that depends only on the
input: the encoder's output (`EncoderDecoder`, Trax's `tl.Cache(encoder)`) and the keys and values
of each encoder-decoder attention (`EncoderDecoderAttention`, Trax's `cache_KV_in_predict`).

Both compute on the first predict-mode call, keep the result in the `'cache'` collection with a
`*_filled` flag, and skip the computation on later calls with `nn.cond`; in other modes they are
plain `Serial` / `AttentionQKV` with the same parameters.

```python
model = Transformer(input_vocab_size=32, d_model=32, d_ff=64, n_encoder_layers=2,
                    n_decoder_layers=2, n_heads=4)   # uses both; see declax.decoding
```
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

import declax.layers as tl
from declax.layers.combinators import positional_layers


class EncoderDecoderAttention(tl.AttentionQKV):
  """`AttentionQKV` that, in `'predict'` mode, projects the encoder's keys and values once.

  Trax's `AttentionQKV(..., cache_KV_in_predict=True)`: the first predict-mode call stores the
  projected keys and values in the `'cache'` collection (`encoder_key`, `encoder_value`, and the
  flag `kv_filled`); later calls reuse them and skip the two projections (`nn.cond`, so they
  are not computed at all). Other modes, and `cache_KV_in_predict=False`, act as
  `AttentionQKV`. Same parameters as `AttentionQKV`; prints as `AttentionQKV`.

  ```python
  layer = EncoderDecoderAttention(16, n_heads=4, mode='predict')
  y, mask = layer.apply(variables, (decoder_x, encoder_x, encoder_x, mask), mutable=['cache'])
  ```
  """

  cache_KV_in_predict: bool = dataclasses.field(default=True, kw_only=True)  # noqa: N815

  @property
  def default_label(self) -> str:
    return "AttentionQKV"

  @nn.compact
  def forward(self, queries, keys, values, mask):  # (AttentionQKV's contract checks them)
    q = self._project(queries, "query")
    if self.mode == "predict" and self.cache_KV_in_predict:
      k, v = self._cached_key_value(keys, values)
    else:
      k, v = self._project(keys, "key"), self._project(values, "value")
    return self._output(self._attend(q, k, v, mask, is_causal=False)), mask

  def _cached_key_value(self, keys, values):
    if not self.has_variable("cache", "kv_filled"):  # init: create the (empty) cache
      k, v = self._project(keys, "key"), self._project(values, "value")
      self.variable("cache", "kv_filled", lambda: jnp.zeros((), bool))
      self.variable("cache", "encoder_key", jnp.zeros_like, k)
      self.variable("cache", "encoder_value", jnp.zeros_like, v)
      return k, v
    filled = self.variable("cache", "kv_filled")
    cached_k = self.variable("cache", "encoder_key")
    cached_v = self.variable("cache", "encoder_value")

    def project(mdl, keys, values, _, __):
      return mdl._project(keys, "key"), mdl._project(values, "value")

    def reuse(mdl, keys, values, k, v):
      return k, v

    k, v = nn.cond(filled.value, reuse, project, self, keys, values, cached_k.value,
                   cached_v.value, variables="params", rngs=False)
    cached_k.value, cached_v.value, filled.value = k, v, jnp.ones((), bool)
    return k, v


@positional_layers()
class EncoderDecoder(tl.Serial):
  """The encoder-decoder `Serial`, whose first `n_encoder_layers` sublayers (the encoder) run
  only once per input in `'predict'` mode (Trax's `tl.Cache(encoder)`).

  The first predict-mode call stores the encoder's outputs (activations and padding mask) in the
  `'cache'` collection (`encoder_output`, `encoder_mask`, flag `encoder_filled`); later calls
  skip the encoder (`nn.cond`) and only run the decoder on the new target token. Other modes
  run all sublayers, as `Serial`. The parameter tree is `Serial`'s; prints as `Serial`.

  ```python
  model = EncoderDecoder(encoder..., decoder..., n_encoder_layers=6, mode='predict')
  ```
  """

  n_encoder_layers: int = 0
  cache_in_predict: bool = True
  mode: str = "train"

  @property
  def default_label(self) -> str:
    return "Serial"

  def _span(self, start: int, stop: int, stack: list) -> list:
    for layer in self.layers[start:stop]:
      stack = list(self.call_child(layer, stack[: layer.n_in])) + stack[layer.n_in :]
    return stack

  @nn.compact
  def forward(self, *items):
    if self.mode != "predict" or not self.cache_in_predict:
      return tuple(self._span(0, len(self.layers), list(items)))
    k = self.n_encoder_layers
    inputs, targets = items[:2]
    if not self.has_variable("cache", "encoder_filled"):  # init: create the (empty) cache
      stack = self._span(0, k, [inputs, targets])
      self.variable("cache", "encoder_filled", lambda: jnp.zeros((), bool))
      self.variable("cache", "encoder_output", jnp.zeros_like, stack[0])
      self.variable("cache", "encoder_mask", jnp.zeros_like, stack[1])
      return tuple(self._span(k, len(self.layers), stack) + list(items[2:]))
    filled = self.variable("cache", "encoder_filled")
    output, mask = self.variable("cache", "encoder_output"), self.variable("cache", "encoder_mask")

    def encode(mdl, inputs, targets, _, __):
      return tuple(mdl._span(0, k, [inputs, targets])[:2])

    def reuse(mdl, inputs, targets, x, m):
      return x, m

    x_enc, enc_mask = nn.cond(filled.value, reuse, encode, self, inputs, targets, output.value,
                              mask.value, variables="params", rngs=False)
    output.value, mask.value, filled.value = x_enc, enc_mask, jnp.ones((), bool)
    stack = [x_enc, enc_mask, targets, targets] + list(items[2:])
    return tuple(self._span(k, len(self.layers), stack))
