"""Trax's `LSTMSeq2SeqAttn`: an LSTM encoder-decoder with attention."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.models.blocks import compute_dtype, float32_logits

__all__ = ["LSTMSeq2SeqAttn"]


def _prepare_attention_inputs(encoder_activations, decoder_activations, input_tokens):
  """`(queries, keys, values, mask)` with a float mask `(batch, 1, T, S)` of content tokens."""
  batch, source_length = input_tokens.shape
  mask = (input_tokens != 0).reshape((batch, 1, 1, source_length))
  mask = jnp.broadcast_to(mask, (batch, 1, decoder_activations.shape[1], source_length))
  mask = mask.astype(jnp.float32)
  return decoder_activations, encoder_activations, encoder_activations, mask


def LSTMSeq2SeqAttn(input_vocab_size: int = 256, target_vocab_size: int = 256,  # noqa: N802
                    d_model: int = 512, n_encoder_layers: int = 2, n_decoder_layers: int = 2,
                    n_attention_heads: int = 1, attention_dropout: float = 0.0,
                    mode: str = "train", dtype: Any = None) -> tl.Serial:
  """An LSTM sequence-to-sequence model with attention, as Trax's:
  `(source tokens, target tokens) -> (log-probabilities (batch, T, target_vocab_size), target
  tokens)`.

  The encoder (`Embedding`, `n_encoder_layers` LSTMs) gives keys and values; the pre-attention
  decoder (`ShiftRight`, `Embedding`, LSTM) gives queries; a residual `AttentionQKV` masks
  source padding (id 0); `n_decoder_layers` LSTMs, `Dense` and `LogSoftmax` follow. `dtype`
  (declax's, e.g. `'bfloat16'`): the compute dtype; parameters, LSTM states and the
  log-probabilities stay float32.

  ```python
  model = LSTMSeq2SeqAttn(input_vocab_size=10, target_vocab_size=12, d_model=8)
  variables = model.init(jax.random.key(0), (source, target))
  ```
  """
  dtype = compute_dtype(dtype)
  input_encoder = tl.Serial(
      tl.Embedding(input_vocab_size, d_model, dtype=dtype),
      [tl.LSTM(d_model, dtype=dtype) for _ in range(n_encoder_layers)],
  )
  pre_attention_decoder = tl.Serial(
      tl.ShiftRight(mode=mode),
      tl.Embedding(target_vocab_size, d_model, dtype=dtype),
      tl.LSTM(d_model, mode=mode, dtype=dtype),
  )
  return tl.Serial(                                  # in-toks, target-toks
      tl.Select([0, 1, 0, 1]),                       # in-toks, target-toks, in-toks, target-toks
      tl.Parallel(input_encoder, pre_attention_decoder),
      tl.Fn("PrepareAttentionInputs", _prepare_attention_inputs, n_out=4),
      tl.Residual(tl.AttentionQKV(d_model, n_heads=n_attention_heads,
                                  dropout=attention_dropout, mode=mode, dtype=dtype)),
      tl.Select([0, 2]),                             # decoder-vecs, target-toks
      [tl.LSTM(d_model, mode=mode, dtype=dtype) for _ in range(n_decoder_layers)],
      tl.Dense(target_vocab_size, dtype=dtype),
      float32_logits(dtype),                         # the softmax in float32
      tl.LogSoftmax(),
  )
