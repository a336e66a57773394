"""declax models that compute exactly what `trax.models.<name>` computes, layer for layer.

Each builder takes Trax's arguments with Trax's defaults and returns a declax layer tree whose
parameters, taken in creation order, line up one to one with Trax's flat weights (the attention
projections and LSTM kernels are the same numbers in another shape; see `weights.py`). They
differ from `declax.models` where Trax does: `MLP` ends in a plain `Dense` (no `n_classes`,
no `LogSoftmax`), `TransformerEncoder` returns the `Dense` activations, the position table is
trained, `RNNLM` has no dropout between its RNN layers.

Adding a family is one entry in `TRAX_MODELS` (a function of Trax's arguments).

```python
model = model_from_trax('MLP', layer_widths=(32, 16, 5))   # Flatten, Dense_32, Relu, ..., Dense_5
```
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import declax.layers as tl
from declax.errors import DeclaxError, did_you_mean
from declax.models.blocks import Block
from declax.models.transformer import (
    EMBED_AXES,
    DecoderBlock,
    EncoderBlock,
    EncoderPositionalEncoding,
    FeedForward,
)

__all__ = ["TRAX_MODELS", "TraxModelError", "model_from_trax"]


class TraxModelError(DeclaxError, TypeError):
  """`model_from_trax` with an unknown model name or an argument the Trax model does not take."""


def _layer_class(activation: Any) -> Callable[[], tl.Layer]:
  """A declax layer class from a class or a name (`'Relu'`, `'tl.Relu'`)."""
  if not isinstance(activation, str):
    return activation
  name = activation.rsplit(".", 1)[-1]
  if not hasattr(tl, name):
    raise TraxModelError(f"unknown activation {activation!r}{did_you_mean(name, dir(tl))}")
  return getattr(tl, name)


def MLP(layer_widths: Sequence[int] = (128, 64), activation_fn: Any = tl.Relu,  # noqa: N802
        out_activation: bool = False, flatten: bool = True, mode: str = "train") -> tl.Serial:
  """Trax's `MLP`: `[Flatten] -> (Dense, activation_fn) per width`, the last activation dropped
  unless `out_activation`."""
  del mode  # as in Trax
  activation = _layer_class(activation_fn)
  layers = [[tl.Dense(width), activation()] for width in layer_widths]
  if layers and not out_activation:
    layers[-1] = layers[-1][:1]
  return tl.Serial(tl.Flatten() if flatten else None, layers)


def _positional(max_len: int, mode: str, encoder: bool = False) -> tl.PositionalEncoding:
  """Trax's trained position table; an encoder's acts in `'predict'` mode as in `'eval'` (it
  re-reads its whole input on every decoding step)."""
  cls = EncoderPositionalEncoding if encoder else tl.PositionalEncoding
  return cls(max_len=max_len, mode=mode)


def TransformerLM(vocab_size: int, d_model: int = 512, d_ff: int = 2048,  # noqa: N802
                  n_layers: int = 6, n_heads: int = 8, max_len: int = 2048,
                  dropout: float = 0.1, dropout_shared_axes: Sequence[int] | None = None,
                  mode: str = "train", ff_activation: Any = tl.Relu) -> tl.Serial:
  """Trax's `TransformerLM`: tokens `(batch, length)` -> logits `(batch, length, vocab_size)`."""
  shared = tuple(dropout_shared_axes or ())
  activation = _layer_class(ff_activation)
  return tl.Serial(
      tl.ShiftRight(mode=mode),
      tl.Embedding(vocab_size, d_model),
      tl.Dropout(dropout, shared_axes=shared, mode=mode),
      _positional(max_len, mode),
      [DecoderBlock(d_model, d_ff, n_heads, dropout, dropout, shared, activation, mode, max_len)
       for _ in range(n_layers)],
      tl.LayerNorm(),
      tl.Dense(vocab_size),
  )


def TransformerEncoder(vocab_size: int, n_classes: int = 10, d_model: int = 512,  # noqa: N802
                       d_ff: int = 2048, n_layers: int = 6, n_heads: int = 8,
                       max_len: int = 2048, dropout: float = 0.1,
                       dropout_shared_axes: Sequence[int] | None = None, mode: str = "train",
                       ff_activation: Any = tl.Relu) -> tl.Serial:
  """Trax's `TransformerEncoder`: tokens -> `(batch, n_classes)` activations (no softmax)."""
  shared = tuple(dropout_shared_axes or ())
  activation = _layer_class(ff_activation)
  return tl.Serial(
      tl.Branch([], tl.PaddingMask()),
      tl.Embedding(vocab_size, d_model),
      tl.Dropout(dropout, shared_axes=shared, mode=mode),
      _positional(max_len, mode, encoder=True),
      [EncoderBlock(d_model, d_ff, n_heads, dropout, dropout, shared, activation, mode)
       for _ in range(n_layers)],
      tl.Select([0], n_in=2),
      tl.LayerNorm(),
      tl.Mean(axis=1),
      tl.Dense(n_classes),
  )


def _encoder_decoder_block(d_model, d_ff, n_heads, dropout, shared, activation, mode,
                           max_len) -> Block:
  """Trax's `_EncoderDecoderBlock`: its causal self-attention has no attention dropout."""
  return Block(
      tl.Residual(
          tl.LayerNorm(),
          tl.CausalAttention(d_model, n_heads=n_heads, mode=mode, max_inference_length=max_len),
          tl.Dropout(dropout, shared_axes=shared, mode=mode),
      ),
      tl.Residual(
          tl.LayerNorm(),
          tl.Select([0, 2, 2, 1, 2]),
          tl.AttentionQKV(d_model, n_heads=n_heads, dropout=dropout, mode=mode),
          tl.Dropout(dropout, shared_axes=shared, mode=mode),
      ),
      tl.Residual(FeedForward(d_model, d_ff, dropout, shared, activation, mode),
                  tl.Dropout(dropout, shared_axes=shared, mode=mode)),
      block_name="EncoderDecoderBlock", input_axes=EMBED_AXES,
  )


def Transformer(input_vocab_size: int, output_vocab_size: int | None = None,  # noqa: N802
                d_model: int = 512, d_ff: int = 2048, n_encoder_layers: int = 6,
                n_decoder_layers: int = 6, n_heads: int = 8, max_len: int = 2048,
                dropout: float = 0.1, dropout_shared_axes: Sequence[int] | None = None,
                mode: str = "train", ff_activation: Any = tl.Relu) -> tl.Serial:
  """Trax's `Transformer`: `(inputs, targets)` -> `(logits, targets)`; in `'predict'` mode the
  encoder re-reads the whole input on every step (Trax caches its output instead)."""
  shared = tuple(dropout_shared_axes or ())
  activation = _layer_class(ff_activation)
  in_embedding = tl.Embedding(input_vocab_size, d_model)
  if output_vocab_size is None:
    out_embedding, output_vocab_size = in_embedding, input_vocab_size
  else:
    out_embedding = tl.Embedding(output_vocab_size, d_model)
  encoder_mode = "eval" if mode == "predict" else mode
  return tl.Serial(
      tl.Select([0, 1, 1]),                          # tok_e tok_d tok_d
      tl.Branch([], tl.PaddingMask()),               # tok_e mask tok_d tok_d
      in_embedding,
      tl.Dropout(dropout, shared_axes=shared, mode=encoder_mode),
      _positional(max_len, encoder_mode, encoder=True),
      [EncoderBlock(d_model, d_ff, n_heads, dropout, dropout, shared, activation, encoder_mode)
       for _ in range(n_encoder_layers)],
      tl.LayerNorm(),
      tl.Select([2, 1, 0]),                          # tok_d mask vec_e tok_d
      tl.ShiftRight(mode=mode),
      out_embedding,
      tl.Dropout(dropout, shared_axes=shared, mode=mode),
      _positional(max_len, mode),
      [_encoder_decoder_block(d_model, d_ff, n_heads, dropout, shared, activation, mode, max_len)
       for _ in range(n_decoder_layers)],
      tl.LayerNorm(),
      tl.Select([0], n_in=3),                        # vec_d tok_d
      tl.Dense(output_vocab_size),
  )


_RNN_CELLS = {"LSTMCell": tl.LSTM, "GRUCell": tl.GRU}


def RNNLM(vocab_size: int, d_model: int = 512, n_layers: int = 2,  # noqa: N802
          rnn_cell: Any = "LSTMCell", rnn_cell_d_state_multiplier: int = 2,
          dropout: float = 0.1, mode: str = "train") -> tl.Serial:
  """Trax's `RNNLM`: `ShiftRight -> Embedding -> Dropout -> n_layers RNNs -> Dense`, from a
  zero state (Trax's `MakeZeroState` + `Scan` of a multi-layer cell)."""
  name = rnn_cell if isinstance(rnn_cell, str) else getattr(rnn_cell, "__name__", str(rnn_cell))
  name = name.rsplit(".", 1)[-1]
  if name not in _RNN_CELLS:
    raise TraxModelError(f"RNNLM: rnn_cell must be one of {sorted(_RNN_CELLS)}, got {rnn_cell!r}")
  expected = 2 if name == "LSTMCell" else 1
  if rnn_cell_d_state_multiplier != expected:
    raise TraxModelError(f"RNNLM: {name} needs rnn_cell_d_state_multiplier={expected}, got "
                         f"{rnn_cell_d_state_multiplier}")
  sequence_layer = _RNN_CELLS[name]
  return tl.Serial(
      tl.ShiftRight(mode=mode),
      tl.Embedding(vocab_size, d_model),
      tl.Dropout(dropout, mode=mode),
      [sequence_layer(d_model, mode=mode) for _ in range(n_layers)],
      tl.Dense(vocab_size),
  )


# Trax model name -> builder taking Trax's arguments. One entry per family.
TRAX_MODELS: dict[str, Callable[..., tl.Layer]] = {
    "MLP": MLP,
    "RNNLM": RNNLM,
    "Transformer": Transformer,
    "TransformerEncoder": TransformerEncoder,
    "TransformerLM": TransformerLM,
}


def model_from_trax(name: str, **trax_kwargs: Any) -> tl.Layer:
  """The declax model equivalent to `trax.models.<name>(**trax_kwargs)`: Trax's argument names
  and defaults; its parameters load from a Trax checkpoint with `init_from_file`.

  Layer classes (`ff_activation`, `activation_fn`, `rnn_cell`) are given as declax classes or
  by name (`'Relu'`, `'LSTMCell'`).

  ```python
  model = model_from_trax('TransformerLM', vocab_size=20, d_model=32, d_ff=64, n_layers=2,
                          n_heads=4, max_len=64, mode='eval')
  ```
  """
  name = name.rsplit(".", 1)[-1]  # accept 'trax.models.MLP'
  if name not in TRAX_MODELS:
    raise TraxModelError(f"no declax equivalent of trax.models.{name}"
                         f"{did_you_mean(name, TRAX_MODELS)} (known: {', '.join(TRAX_MODELS)})")
  builder = TRAX_MODELS[name]
  accepted = inspect.signature(builder).parameters
  unknown = [k for k in trax_kwargs if k not in accepted]
  if unknown:
    hints = "".join(did_you_mean(k, accepted) for k in unknown)
    raise TraxModelError(f"trax.models.{name} does not take {unknown}{hints}"
                         f"{' It' if hints else '; it'} takes: {', '.join(accepted)}")
  return builder(**trax_kwargs)
