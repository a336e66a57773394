"""Transformers, Trax's way: a decoder-only language model (`TransformerLM`), an encoder
classifier (`TransformerEncoder`) and the encoder-decoder (`Transformer`).

Every block is pre-norm, `Residual(LayerNorm, attention, Dropout)` then
`Residual(FeedForward, Dropout)`. The residual stream is constrained to the logical axes
`('batch', 'length', 'embed')` and the feed-forward's hidden activations to
`('batch', 'length', 'mlp')`, so `declax.sharding`'s rules (embed -> fsdp, mlp/heads/kv/vocab ->
tensor) shard the models unchanged. `dtype='bfloat16'` computes in bfloat16 with float32
parameters; the losses upcast to float32. `scan_layers=True` compiles the `n_layers` blocks as one
`jax.lax.scan` (`ScanLayers_n[ DecoderBlock[...] ]`, parameters stacked on a leading `'layers'`
axis); `remat_policy` (`'full'`, `'dots'`, ...) recomputes each block's activations in the
backward pass.

Outputs: the language models (`TransformerLM`, `Transformer`) return logits; the classifier
`TransformerEncoder` returns log-probabilities, like the other classifiers in `declax.models`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.layers.base import flatten_layers
from declax.models.blocks import Block, ScanLayers, compute_dtype, float32_logits
from declax.models.encoder_cache import EncoderDecoder, EncoderDecoderAttention

EMBED_AXES = ("batch", "length", "embed")
MLP_AXES = ("batch", "length", "mlp")

Activation = Callable[[], tl.Layer] | str


def _activation(activation: Activation) -> Callable[[], tl.Layer]:
  return getattr(tl, activation) if isinstance(activation, str) else activation


class EncoderPositionalEncoding(tl.PositionalEncoding):
  """`PositionalEncoding` for an encoder that sees its whole input on every call: in `'predict'`
  mode it acts as in `'eval'` (positions `0..length-1`, no cache), so a decoder can re-run the
  encoder at each decoding step. Prints as `PositionalEncoding`."""

  @property
  def default_label(self) -> str:
    return "PositionalEncoding"

  def _predict_start(self, length: int) -> int:
    if length > self.max_len:
      raise ValueError(f"encoder input length {length} exceeds max_len={self.max_len}")
    return 0


# ---- Blocks --------------------------------------------------------------------------------------


def FeedForward(d_model: int, d_ff: int, dropout: float, dropout_shared_axes: Sequence[int],  # noqa: N802
                activation: Activation, mode: str, dtype: Any = None) -> Block:
  """`LayerNorm -> Dense(d_ff) -> activation -> Dropout -> Dense(d_model)`, Trax's
  `_FeedForwardBlock`; the hidden activations are constrained to `('batch', 'length', 'mlp')`."""
  return Block(
      tl.LayerNorm(dtype=dtype),
      tl.Dense(d_ff, dtype=dtype),
      _activation(activation)(),
      tl.Dropout(dropout, shared_axes=dropout_shared_axes, mode=mode),
      tl.Dense(d_model, kernel_axes=("mlp", "embed"), bias_axes=("embed",), dtype=dtype),
      block_name="FeedForward",
      output_axes=(EMBED_AXES, MLP_AXES, MLP_AXES, MLP_AXES, EMBED_AXES),
  )


def _block(name: str, attentions: list[list[tl.Layer]], d_model: int, d_ff: int,
           dropout: float, shared: Sequence[int], activation: Activation, mode: str, dtype: Any,
           remat_policy: Any, prevent_cse: bool) -> Block:
  """A pre-norm residual `Residual(LayerNorm, *layers, Dropout)` for each `layers` of
  `attentions`, then `Residual(FeedForward, Dropout)`."""
  residuals = [tl.Residual(tl.LayerNorm(dtype=dtype), *layers,
                           tl.Dropout(dropout, shared_axes=shared, mode=mode))
               for layers in attentions]
  feed_forward = tl.Residual(FeedForward(d_model, d_ff, dropout, shared, activation, mode, dtype),
                             tl.Dropout(dropout, shared_axes=shared, mode=mode))
  return Block(*residuals, feed_forward, block_name=name, input_axes=EMBED_AXES,
               output_axes=(EMBED_AXES,) * (len(residuals) + 1), remat_policy=remat_policy,
               prevent_cse=prevent_cse)


def DecoderBlock(d_model: int, d_ff: int, n_heads: int, dropout: float,  # noqa: N802
                 attention_dropout: float, dropout_shared_axes: Sequence[int],
                 activation: Activation, mode: str, max_len: int, dtype: Any = None,
                 remat_policy: Any = None, prevent_cse: bool = True) -> Block:
  """`x -> x`: causal self-attention and feed-forward, each in a pre-norm residual."""
  attention = tl.CausalAttention(d_model, n_heads=n_heads, dropout=attention_dropout, mode=mode,
                                 max_inference_length=max_len, dtype=dtype)
  return _block("DecoderBlock", [[attention]], d_model, d_ff, dropout, dropout_shared_axes,
                activation, mode, dtype, remat_policy, prevent_cse)


def EncoderBlock(d_model: int, d_ff: int, n_heads: int, dropout: float,  # noqa: N802
                 attention_dropout: float, dropout_shared_axes: Sequence[int],
                 activation: Activation, mode: str, dtype: Any = None,
                 remat_policy: Any = None, prevent_cse: bool = True) -> Block:
  """`(x, mask) -> (x, mask)`: self-attention under a padding mask, then feed-forward."""
  attention = tl.Attention(d_model, n_heads=n_heads, dropout=attention_dropout, mode=mode,
                           dtype=dtype)
  return _block("EncoderBlock", [[attention]], d_model, d_ff, dropout, dropout_shared_axes,
                activation, mode, dtype, remat_policy, prevent_cse)


def EncoderDecoderBlock(d_model: int, d_ff: int, n_heads: int, dropout: float,  # noqa: N802
                        attention_dropout: float, dropout_shared_axes: Sequence[int],
                        activation: Activation, mode: str, max_len: int, dtype: Any = None,
                        remat_policy: Any = None, prevent_cse: bool = True,
                        cache_KV_in_predict: bool = True) -> Block:  # noqa: N803
  """`(x_dec, mask, x_enc) -> same`: causal self-attention, attention to the encoder (under its
  padding mask; in `'predict'` mode its keys and values are projected once), feed-forward."""
  self_attention = tl.CausalAttention(d_model, n_heads=n_heads, dropout=attention_dropout,
                                      mode=mode, max_inference_length=max_len, dtype=dtype)
  encoder_attention = [
      tl.Select([0, 2, 2, 1, 2]),  # x_dec x_enc x_enc mask x_enc
      EncoderDecoderAttention(d_model, n_heads=n_heads, dropout=attention_dropout,
                              mode=mode, dtype=dtype,
                              cache_KV_in_predict=cache_KV_in_predict),  # x_dec mask x_enc
  ]
  return _block("EncoderDecoderBlock", [[self_attention], encoder_attention], d_model, d_ff,
                dropout, dropout_shared_axes, activation, mode, dtype, remat_policy, prevent_cse)


def _stack(make_block: Callable[..., Block], n_layers: int, scan_layers: bool,
           remat_policy: Any) -> list | ScanLayers:
  """`n_layers` blocks: unrolled (a list, flattened into the enclosing Serial) or scanned."""
  if scan_layers:
    return ScanLayers(make_block(remat_policy=remat_policy, prevent_cse=False), n_layers=n_layers)
  return [make_block(remat_policy=remat_policy) for _ in range(n_layers)]


def _common(d_model: int, n_heads: int, dropout: float, dropout_shared_axes: Sequence[int] | None,
            attention_dropout: float | None, dtype: Any) -> tuple[Any, tuple, float]:
  """Checks the shared arguments; returns `(dtype, dropout_shared_axes, attention_dropout)`."""
  if d_model % n_heads:
    raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout}")
  attention_dropout = dropout if attention_dropout is None else attention_dropout
  return compute_dtype(dtype), tuple(dropout_shared_axes or ()), attention_dropout


def _embedder(vocab_size: int, d_model: int, dropout: float, shared: Sequence[int], mode: str,
              dtype: Any, embedding: tl.Embedding | None = None) -> list:
  return [embedding or tl.Embedding(vocab_size, d_model, dtype=dtype),
          tl.Dropout(dropout, shared_axes=shared, mode=mode)]


# ---- Models --------------------------------------------------------------------------------------


def TransformerLM(vocab_size: int, d_model: int = 512, d_ff: int = 2048,  # noqa: N802
                  n_layers: int = 6, n_heads: int = 8, max_len: int = 2048,
                  dropout: float = 0.1, dropout_shared_axes: Sequence[int] | None = None,
                  mode: str = "train", ff_activation: Activation = tl.Relu,
                  attention_dropout: float | None = None, scan_layers: bool = False,
                  remat_policy: Any = None, dtype: Any = None) -> tl.Serial:
  """A decoder-only Transformer language model: tokens `(batch, length)` int -> logits
  `(batch, length, vocab_size)`, where position `t` predicts token `t` from tokens `< t`.

  `ShiftRight -> Embedding -> Dropout -> PositionalEncoding -> n_layers x DecoderBlock ->
  LayerNorm -> Dense(vocab_size)`, as Trax's `TransformerLM`. Train it on `(tokens, tokens,
  weights)` batches with `tl.WeightedCategoryCrossEntropy()`.

  **Arguments**
  - `vocab_size`, `d_model` (embedding and residual width), `d_ff` (feed-forward width),
    `n_layers`, `n_heads` (must divide `d_model`), `max_len` (longest sequence; also the length
    of the decoding cache in `'predict'` mode).
  - `dropout` (residual, embedding and feed-forward dropout), `dropout_shared_axes` (axes that
    share one mask, e.g. `(1,)` for the length), `attention_dropout` (on the attention weights;
    None: `dropout`, as in Trax).
  - `mode`: `'train'`, `'eval'` or `'predict'` (one token at a time, with KV caches in the
    `'cache'` collection; see `declax.decoding`). `ff_activation`: a layer class or its name.
  - `scan_layers`: run the blocks as one `lax.scan` (compile time flat in `n_layers`);
    `remat_policy`: None, `'full'`, `'dots'`, `'dots_no_batch'` or a `jax.checkpoint` policy.
  - `dtype`: compute dtype (e.g. `'bfloat16'`); parameters stay float32 and the logits are
    cast back to float32 (`config.dtype` sets it for every model of a config).

  ```python
  model = TransformerLM(vocab_size=256, d_model=32, d_ff=64, n_layers=2, n_heads=4)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 16), jnp.int32))
  logits = tl.with_mode(model, 'eval').apply(variables, tokens)    # (2, 16, 256)
  ```
  """
  dtype, shared, attention_dropout = _common(d_model, n_heads, dropout, dropout_shared_axes,
                                             attention_dropout, dtype)

  def block(**kwargs) -> Block:
    return DecoderBlock(d_model, d_ff, n_heads, dropout, attention_dropout, shared,
                        ff_activation, mode, max_len, dtype, **kwargs)

  return tl.Serial(
      tl.ShiftRight(mode=mode),
      _embedder(vocab_size, d_model, dropout, shared, mode, dtype),
      tl.PositionalEncoding(max_len=max_len, mode=mode),
      _stack(block, n_layers, scan_layers, remat_policy),
      tl.LayerNorm(dtype=dtype),
      tl.Dense(vocab_size, kernel_axes=("embed", "vocab"), bias_axes=("vocab",), dtype=dtype),
      float32_logits(dtype),
  )


def _attend_all(tokens):
  """A mask `(batch, 1, 1, length)` of True: every token may be attended to."""
  return jnp.ones((tokens.shape[0], 1, 1, tokens.shape[1]), bool)


def TransformerEncoder(vocab_size: int, n_classes: int = 10, d_model: int = 512,  # noqa: N802
                       d_ff: int = 2048, n_layers: int = 6, n_heads: int = 8,
                       max_len: int = 2048, dropout: float = 0.1,
                       dropout_shared_axes: Sequence[int] | None = None, mode: str = "train",
                       ff_activation: Activation = tl.Relu, attention_dropout: float | None = None,
                       pad_id: int | None = 0, flatten_inputs: bool = False,
                       scan_layers: bool = False, remat_policy: Any = None,
                       dtype: Any = None) -> tl.Serial:
  """A Transformer encoder classifier: tokens `(batch, length)` int -> log-probabilities
  `(batch, n_classes)`.

  `Branch([], PaddingMask) -> Embedding -> Dropout -> PositionalEncoding -> n_layers x
  EncoderBlock -> LayerNorm -> Mean over length -> Dense(n_classes) -> LogSoftmax`, as Trax's
  `TransformerEncoder`. Tokens equal to `pad_id` are not attended to (they still count in the
  mean over the length, as in Trax); `pad_id=None` attends to every token. `flatten_inputs=True`
  first flattens everything after the batch axis into one sequence (`Flatten`), so e.g. 8x8
  images of pixel values become sequences of 64 tokens. The output is log-probabilities, like
  `MLP` and the other
  classifiers: train with `tl.CrossEntropyLoss()` (or `tl.WeightedCategoryCrossEntropy()`, which
  gives the same value on log-probabilities). The classification head computes in float32.

  Arguments as for `TransformerLM`, plus `n_classes`, `pad_id` and `flatten_inputs`.

  ```python
  model = TransformerEncoder(vocab_size=18, n_classes=10, d_model=32, d_ff=64, n_layers=2,
                             n_heads=4, max_len=64)
  log_probs = model.apply(variables, tokens, rngs={'dropout': key})   # (batch, 10)
  ```
  """
  dtype, shared, attention_dropout = _common(d_model, n_heads, dropout, dropout_shared_axes,
                                             attention_dropout, dtype)

  def block(**kwargs) -> Block:
    return EncoderBlock(d_model, d_ff, n_heads, dropout, attention_dropout, shared,
                        ff_activation, mode, dtype, **kwargs)

  mask = tl.PaddingMask(pad=pad_id) if pad_id is not None else tl.Fn("AttendAll", _attend_all)
  return tl.Serial(
      tl.Flatten() if flatten_inputs else None,
      tl.Branch([], mask),                                    # tokens mask
      _embedder(vocab_size, d_model, dropout, shared, mode, dtype),
      EncoderPositionalEncoding(max_len=max_len, mode=mode),  # x mask
      _stack(block, n_layers, scan_layers, remat_policy),
      tl.Select([0], n_in=2),                                 # x
      tl.LayerNorm(dtype=dtype),
      tl.Mean(axis=1),
      tl.Dense(n_classes, kernel_axes=("embed", None), bias_axes=(None,), dtype=jnp.float32),
      tl.LogSoftmax(),
  )


def Transformer(input_vocab_size: int, output_vocab_size: int | None = None,  # noqa: N802
                d_model: int = 512, d_ff: int = 2048, n_encoder_layers: int = 6,
                n_decoder_layers: int = 6, n_heads: int = 8, max_len: int = 2048,
                dropout: float = 0.1, dropout_shared_axes: Sequence[int] | None = None,
                mode: str = "train", ff_activation: Activation = tl.Relu,
                attention_dropout: float | None = None, pad_id: int = 0,
                scan_layers: bool = False, remat_policy: Any = None,
                dtype: Any = None, cache_encoder_in_predict: bool = True) -> tl.Serial:
  """The encoder-decoder Transformer: `(inputs, targets)` -> `(logits, targets)`.

  As in Trax, `n_in == 2` and `n_out == 2`: the model copies the targets under its logits
  `(batch, target_length, output_vocab_size)`, so `Serial(model, loss)` consumes a whole
  `(inputs, targets, weights)` batch. The encoder masks input tokens equal to `pad_id`; the
  decoder shifts the targets right and attends causally to itself and to the encoder.
  `output_vocab_size=None` shares one embedding between inputs and targets.

  In `'predict'` mode (`declax.decoding.beam_search`, `autoregressive_sample(...,
  inputs=...)`) the decoder keeps KV caches and takes one target token per call. With
  `cache_encoder_in_predict=True` (default) the encoder runs once per input, on the first call,
  and the keys and values of every encoder-decoder attention are projected once too (Trax's
  `tl.Cache(encoder)` and `cache_KV_in_predict`); `False` re-runs them on every call.

  ```python
  model = Transformer(input_vocab_size=32, d_model=32, d_ff=64, n_encoder_layers=2,
                      n_decoder_layers=2, n_heads=4, max_len=64)
  logits, targets = model.apply(variables, (inputs, targets), rngs={'dropout': key})
  ```
  """
  dtype, shared, attention_dropout = _common(d_model, n_heads, dropout, dropout_shared_axes,
                                             attention_dropout, dtype)
  in_embedding = tl.Embedding(input_vocab_size, d_model, dtype=dtype)
  out_vocab = input_vocab_size if output_vocab_size is None else output_vocab_size
  out_embedding = in_embedding if output_vocab_size is None else None

  def encoder_block(**kwargs) -> Block:
    return EncoderBlock(d_model, d_ff, n_heads, dropout, attention_dropout, shared,
                        ff_activation, mode, dtype, **kwargs)

  def decoder_block(**kwargs) -> Block:
    return EncoderDecoderBlock(d_model, d_ff, n_heads, dropout, attention_dropout, shared,
                               ff_activation, mode, max_len, dtype,
                               cache_KV_in_predict=cache_encoder_in_predict, **kwargs)

  encoder = flatten_layers([
      tl.Select([0, 1, 1]),                                   # inputs targets targets
      tl.Branch([], tl.PaddingMask(pad=pad_id)),              # inputs mask targets targets
      _embedder(input_vocab_size, d_model, dropout, shared, mode, dtype, in_embedding),
      EncoderPositionalEncoding(max_len=max_len, mode=mode),  # x_enc mask targets targets
      _stack(encoder_block, n_encoder_layers, scan_layers, remat_policy),
      tl.LayerNorm(dtype=dtype),
  ])
  return EncoderDecoder(
      *encoder,
      tl.Select([2, 1, 0]),                                   # targets mask x_enc targets
      tl.ShiftRight(mode=mode),
      _embedder(out_vocab, d_model, dropout, shared, mode, dtype, out_embedding),
      tl.PositionalEncoding(max_len=max_len, mode=mode),      # x_dec mask x_enc targets
      _stack(decoder_block, n_decoder_layers, scan_layers, remat_policy),
      tl.LayerNorm(dtype=dtype),
      tl.Select([0], n_in=3),                                 # x_dec targets
      tl.Dense(out_vocab, kernel_axes=("embed", "vocab"), bias_axes=("vocab",), dtype=dtype),
      float32_logits(dtype),
      n_encoder_layers=len(encoder), cache_in_predict=cache_encoder_in_predict, mode=mode,
  )
