"""Reformer models (Kitaev, Kaiser, Levskaya 2020), with Trax's names and arguments: the
reversible language model `ReformerLM`, the encoder-decoder `Reformer` and `ReformerShortenLM`.

Every block is a pair of `ReversibleHalfResidual`s (attention, then a feed-forward chunked over
positions with `ff_chunk_size`) running inside one `ReversibleSerial`, so training memory for
activations does not grow with `n_layers`. `attention_type` is any attention layer class (or its
name): Trax's efficient ones (`SelfAttention`, `LSHSelfAttention`, ...) get `n_heads`, `d_qk`,
`d_v`, `causal`, `masked`; plain ones (`CausalAttention`) get `d_model, n_heads, dropout`.

```python
model = ReformerLM(vocab_size=256, d_model=64, d_ff=128, n_layers=2, n_heads=2, max_len=64,
                   attention_type='CausalAttention')
logits = model.apply(model.init(jax.random.key(0), tokens), tokens, rngs={'dropout': key})
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.models.blocks import compute_dtype, float32_logits
from declax.models.reformer_blocks import (
  SRU,
  FeedForward,
  PositionalEncoder,
  ReformerConfigError,
  _decoder_blocks,
)

__all__ = ["Reformer", "ReformerConfigError", "ReformerLM", "ReformerShortenLM"]

# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def ReformerLM(vocab_size: int, d_model: int = 512, d_ff: int = 2048,  # noqa: N802
               d_attention_key: int = 64, d_attention_value: int = 64, n_layers: int = 6,
               n_heads: int = 8, dropout: float = 0.1, max_len: int = 2048,
               attention_type: Any = "SelfAttention", pos_type: str | None = None,
               pos_axial_shape: Sequence[int] = (), pos_d_axial_embs: Sequence[int] | None = None,
               pos_start_from_zero_prob: float = 1.0, pos_max_offset_to_add: int = 0,
               ff_activation: Any = "FastGelu", ff_use_sru: Any = 0, ff_chunk_size: int = 0,
               ff_sparsity: int = 0, attention_chunk_size: int = 0,
               mode: str = "train", attention_kwargs: dict | None = None,
               dtype: Any = None) -> tl.Serial:
  """The reversible Transformer language model: tokens `(batch, length)` -> logits
  `(batch, length, vocab_size)`, where position `t` sees tokens `< t`.

  `ShiftRight -> Embedding -> Dropout -> position encoding -> Dup -> ReversibleSerial(n_layers
  decoder blocks) -> Concatenate -> LayerNorm -> Dropout -> Dense(vocab_size)`, as Trax's.
  Arguments are Trax's: `d_model` is the depth of each half of the two-part residual stream;
  `attention_type` a class or name (a list/tuple alternates per layer); `pos_type` one of
  `POS_TYPES` (`'axial'` needs `pos_axial_shape` multiplying to `max_len` and
  `pos_d_axial_embs` summing to `d_model`); `ff_chunk_size` runs the feed-forward on chunks of
  that many positions; `ff_use_sru` adds that many SRU layers. `ff_sparsity` must be 0 (sparse
  feed-forward layers are not in declax). `attention_kwargs` (declax's; Trax sets these with gin)
  go to every attention layer that takes them, e.g. `{'chunk_len': 64, 'n_hashes': 2}`.
  `dtype` (declax's, e.g. `'bfloat16'`): the compute dtype of every layer, the reversible
  blocks' recomputation included; parameters and logits stay float32.

  ```python
  model = ReformerLM(vocab_size=256, d_model=64, d_ff=128, n_layers=2, n_heads=2, max_len=64,
                     attention_type='LSHSelfAttention', ff_chunk_size=32)
  ```
  """
  if ff_sparsity:
    raise ReformerConfigError("ff_sparsity must be 0: declax has no sparse feed-forward layers")
  dtype = compute_dtype(dtype)
  encoding = PositionalEncoder(mode, dropout, max_len, pos_type, pos_axial_shape,
                               pos_d_axial_embs, pos_start_from_zero_prob, pos_max_offset_to_add,
                               d_model=d_model)
  blocks = _decoder_blocks(
      n_layers, attention_type, d_model=d_model, d_ff=d_ff, d_attention_key=d_attention_key,
      d_attention_value=d_attention_value, n_heads=n_heads, dropout=dropout,
      ff_activation=ff_activation, ff_dropout=dropout, ff_use_sru=ff_use_sru,
      ff_chunk_size=ff_chunk_size, attention_chunk_size=attention_chunk_size, mode=mode,
      max_len=max_len, attention_kwargs=attention_kwargs, dtype=dtype)
  return tl.Serial(
      tl.ShiftRight(mode=mode),
      tl.Embedding(vocab_size, d_model, dtype=dtype),
      tl.Dropout(dropout, shared_axes=(-2,), mode=mode),
      encoding,
      tl.Dup(),
      tl.ReversibleSerial(blocks),
      tl.Concatenate(),
      tl.LayerNorm(dtype=dtype),
      tl.Dropout(dropout, shared_axes=(-2,), mode=mode),
      tl.Dense(vocab_size, kernel_axes=("embed", "vocab"), bias_axes=("vocab",), dtype=dtype),
      float32_logits(dtype),
  )


def _causal_conv(filters: int, kernel_width: int = 3, dtype: Any = None) -> tl.Serial:
  """Trax's `CausalConv`: a 1-D convolution that sees only the current and earlier positions."""
  pad = tl.Fn("CausalPad", lambda x: jnp.pad(x, ((0, 0), (kernel_width - 1, 0), (0, 0))))
  return tl.Serial(pad, tl.Conv(filters, (kernel_width,), dtype=dtype), name="CausalConv")


def ReformerShortenLM(vocab_size: int, shorten_factor: int = 1, d_embedding: int = 256,  # noqa: N802
                      d_model: int = 512, d_ff: int = 2048, d_attention_key: int = 64,
                      d_attention_value: int = 64, n_layers: int = 6, n_heads: int = 8,
                      dropout: float = 0.1, max_len: int = 2048,
                      attention_type: Any = "SelfAttention", pos_type: str | None = None,
                      pos_axial_shape: Sequence[int] = (),
                      pos_d_axial_embs: Sequence[int] | None = None,
                      ff_activation: Any = "FastGelu", ff_use_sru: Any = 0,
                      ff_chunk_size: int = 0, ff_sparsity: int = 0,
                      attention_chunk_size: int = 0, mode: str = "train",
                      attention_kwargs: dict | None = None, dtype: Any = None) -> tl.Serial:
  """`ReformerLM` whose body runs on `length / shorten_factor` positions: groups of
  `shorten_factor` embeddings are moved into depth, processed, moved back and finished by a
  causal convolution and an SRU (Trax's semantics; no `'predict'` mode, as in Trax). `dtype`:
  the compute dtype, as in `ReformerLM`.

  ```python
  model = ReformerShortenLM(vocab_size=256, shorten_factor=2, d_embedding=32, d_model=64,
                            d_ff=128, n_layers=2, n_heads=2, max_len=64,
                            attention_type='CausalAttention')
  ```
  """
  if mode == "predict":
    raise ReformerConfigError("ReformerShortenLM has no 'predict' mode (as in Trax); decode "
                              "with ReformerLM")
  if ff_sparsity:
    raise ReformerConfigError("ff_sparsity must be 0: declax has no sparse feed-forward layers")
  dtype = compute_dtype(dtype)
  encoding = PositionalEncoder(mode, dropout, max_len, pos_type, pos_axial_shape,
                               pos_d_axial_embs, d_model=d_embedding)
  blocks = _decoder_blocks(
      n_layers, attention_type, d_model=d_model, d_ff=d_ff, d_attention_key=d_attention_key,
      d_attention_value=d_attention_value, n_heads=n_heads, dropout=dropout,
      ff_activation=ff_activation, ff_dropout=dropout, ff_use_sru=ff_use_sru,
      ff_chunk_size=ff_chunk_size, attention_chunk_size=attention_chunk_size, mode=mode,
      max_len=max_len, attention_kwargs=attention_kwargs, dtype=dtype)
  factor = shorten_factor
  return tl.Serial(
      tl.ShiftRight(),
      tl.Embedding(vocab_size, d_embedding, dtype=dtype),
      tl.Dropout(dropout, shared_axes=(-2,), mode=mode),
      encoding,
      tl.Dup(),                                                  # x x
      tl.ShiftRight(n_positions=factor - 1),
      tl.Fn("Shorten", lambda x: x.reshape(x.shape[0], x.shape[1] // factor, -1)),
      tl.Dense(d_model, dtype=dtype),
      tl.Dup(),                                                  # short short x
      tl.ReversibleSerial(blocks),
      tl.Select([0], n_in=2),
      tl.LayerNorm(dtype=dtype),
      tl.Dropout(dropout, shared_axes=(-2,), mode=mode),
      tl.Dense(factor * d_embedding, dtype=dtype),
      tl.Fn("ProlongBack", lambda x: x.reshape(x.shape[0], x.shape[1] * factor, -1)),
      tl.Concatenate(),                                          # with the embeddings
      _causal_conv(d_embedding, dtype=dtype),
      tl.Relu(),
      SRU(d_embedding, mode=mode, dtype=dtype),
      tl.Dense(vocab_size, kernel_axes=("embed", "vocab"), bias_axes=("vocab",), dtype=dtype),
      float32_logits(dtype),
  )


# ------------------------------------------------------------------------------------------------
# Encoder-decoder
# ------------------------------------------------------------------------------------------------


def _xy_avg() -> tl.Fn:
  return tl.Fn("XYAvg", lambda x, y: (x + y) / 2.0)


def Reformer(input_vocab_size: int, output_vocab_size: int | None = None,  # noqa: N802
             d_model: int = 512, d_ff: int = 2048, n_encoder_layers: int = 6,
             n_decoder_layers: int = 6, n_heads: int = 8, dropout: float = 0.1,
             max_len: int = 2048, ff_activation: Any = "Relu", ff_dropout: float | None = None,
             mode: str = "train", pos_type: str | None = None,
             pos_axial_shape: Sequence[int] | None = None,
             pos_d_axial_embs: Sequence[int] | None = None, ff_use_sru: Any = 0,
             ff_chunk_size: int = 0, ff_sparsity: int = 0, dtype: Any = None) -> tl.Serial:
  """The reversible encoder-decoder: `(inputs, targets) -> (logits, targets)`, Trax's `Reformer`.

  The encoder runs `n_encoder_layers` reversible blocks of masked `SelfAttention` (input tokens
  equal to 0 are padding) and feed-forward; the decoder's blocks add causal `SelfAttention` and
  `EncDecAttention` to the encoder. Both halves of each residual stream are averaged at the
  end. Input and target embeddings are shared when `output_vocab_size` is None. In `'predict'`
  mode the decoder keeps its caches and the encoder re-reads the inputs on every call. `dtype`
  (declax's): the compute dtype, as in `ReformerLM`.

  ```python
  model = Reformer(input_vocab_size=32, d_model=32, d_ff=64, n_encoder_layers=1,
                   n_decoder_layers=1, n_heads=2, max_len=16)
  logits, targets = model.apply(variables, (inputs, targets), rngs={'dropout': key})
  ```
  """
  if ff_sparsity:
    raise ReformerConfigError("ff_sparsity must be 0: declax has no sparse feed-forward layers")
  ff_dropout = dropout if ff_dropout is None else ff_dropout
  dtype = compute_dtype(dtype)
  enc_mode = "eval" if mode == "predict" else mode
  d_head = d_model // n_heads

  def ff(block_mode):
    return FeedForward(d_model, d_ff, dropout, ff_activation, ff_dropout, ff_chunk_size,
                       ff_use_sru, True, block_mode, dtype)

  def encoder_block():
    attention = tl.SelfAttention(n_heads=n_heads, d_qk=d_head, d_v=d_head, masked=True,
                                 attention_dropout=dropout, output_dropout=dropout,
                                 mode=enc_mode, dtype=dtype)
    return [tl.ReversibleHalfResidual(tl.LayerNorm(dtype=dtype), attention_layer=attention,
                                      name="ReversibleHalfResidualEncoderAttn"),
            tl.ReversibleSwap(),
            tl.ReversibleHalfResidual(ff(enc_mode), name="ReversibleHalfResidualEncoderFF"),
            tl.ReversibleSwap()]

  def decoder_block():
    causal = tl.SelfAttention(n_heads=n_heads, d_qk=d_head, d_v=d_head, causal=True,
                              attention_dropout=dropout, output_dropout=dropout, mode=mode,
                              predict_mem_len=max_len, dtype=dtype)
    enc_dec = tl.EncDecAttention(n_heads=n_heads, d_qk=d_head, d_v=d_head,
                                 attention_dropout=dropout, output_dropout=dropout, mode=mode,
                                 dtype=dtype)
    return [tl.ReversibleHalfResidual(tl.LayerNorm(dtype=dtype), attention_layer=causal),
            tl.ReversibleSwap(),
            tl.ReversibleHalfResidual(tl.LayerNorm(dtype=dtype), attention_layer=enc_dec),
            tl.ReversibleSwap(),
            tl.ReversibleHalfResidual(ff(mode)),
            tl.ReversibleSwap()]

  in_embedding = tl.Embedding(input_vocab_size, d_model, dtype=dtype)
  out_vocab = input_vocab_size if output_vocab_size is None else output_vocab_size
  out_embedding = (in_embedding if output_vocab_size is None
                   else tl.Embedding(out_vocab, d_model, dtype=dtype))
  pos = dict(max_len=max_len, pos_type=pos_type, pos_axial_shape=pos_axial_shape,
             pos_d_axial_embs=pos_d_axial_embs, d_model=d_model)
  encoder = tl.Serial(
      in_embedding, tl.Dropout(dropout, shared_axes=(-2,), mode=enc_mode),
      PositionalEncoder(mode, dropout if mode == "train" else 0.0, encoder=True, **pos),
      tl.Dup(),
      tl.ReversibleSerial([encoder_block() for _ in range(n_encoder_layers)]),
      _xy_avg(),
      tl.LayerNorm(dtype=dtype),
  )
  return tl.Serial(
      tl.Select([0, 1, 1]),                                      # tok_e tok_d tok_d
      tl.Branch([], [tl.PaddingMask(),
                     tl.Fn("RemoveAxes12", lambda m: jnp.squeeze(m, (1, 2)))]),
      encoder,                                                   # vec_e mask tok_d tok_d
      tl.Select([2, 0, 1]),                                      # tok_d vec_e mask tok_d
      tl.ShiftRight(mode=mode),
      out_embedding, tl.Dropout(dropout, shared_axes=(-2,), mode=mode),
      PositionalEncoder(mode, dropout, **pos),
      tl.Dup(),                                                  # vec_d1 vec_d2 vec_e mask
      tl.ReversibleSerial([decoder_block() for _ in range(n_decoder_layers)]),
      _xy_avg(),
      tl.LayerNorm(dtype=dtype),
      tl.Select([0], n_in=3),                                    # vec_d tok_d
      tl.Dense(out_vocab, kernel_axes=("embed", "vocab"), bias_axes=("vocab",), dtype=dtype),
      float32_logits(dtype),
  )
