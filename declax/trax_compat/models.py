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

import ast
import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import declax.layers as tl
from declax.errors import DeclaxError, did_you_mean
from declax.models import reformer
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


def _dotted(node: ast.AST) -> str | None:
  """`'tl.SelfAttention'` from the expression `tl.SelfAttention`; None if not a dotted name."""
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    base = _dotted(node.value)
    return None if base is None else f"{base}.{node.attr}"
  return None


def _layer_class(spec: Any, what: str = "activation") -> Callable[..., tl.Layer]:
  """A declax layer class from a class, a name (`'Relu'`, `'tl.Relu'`) or a name with literal
  keyword arguments, as Trax's gin bindings set them (`'SelfAttention(chunk_len=16)'` ->
  `functools.partial(tl.SelfAttention, chunk_len=16)`). The string is parsed, never run."""
  if not isinstance(spec, str):
    return spec
  usage = (f"{what} {spec!r}: give a declax.layers class name, optionally with literal keyword "
           f"arguments, e.g. 'SelfAttention(chunk_len=64, n_chunks_before=1)'")
  try:
    node = ast.parse(spec.strip(), mode="eval").body
  except SyntaxError:
    raise TraxModelError(usage) from None
  call = node if isinstance(node, ast.Call) else None
  dotted = _dotted(call.func if call else node)
  if dotted is None or (call and (call.args or any(k.arg is None for k in call.keywords))):
    raise TraxModelError(usage)
  name = dotted.rsplit(".", 1)[-1]
  classes = [n for n in dir(tl) if n[:1].isupper()]
  if name not in classes:
    raise TraxModelError(f"unknown {what} {spec!r}{did_you_mean(name, classes)}")
  cls = getattr(tl, name)
  if call is None:
    return cls
  try:
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
  except ValueError:
    raise TraxModelError(f"{usage} (only literals: numbers, strings, tuples, ...)") from None
  fields = ({f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls)
            else set(inspect.signature(cls).parameters))
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    hints = "".join(did_you_mean(k, fields) for k in unknown)
    raise TraxModelError(f"{what} {spec!r}: {name} does not take {unknown}{hints}")
  return functools.partial(cls, **kwargs)


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


def ReformerLM(vocab_size: int, d_model: int = 512, d_ff: int = 2048,  # noqa: N802
               d_attention_key: int = 64, d_attention_value: int = 64, n_layers: int = 6,
               n_heads: int = 8, dropout: float = 0.1, max_len: int = 2048,
               attention_type: Any = tl.SelfAttention, pos_type: str | None = None,
               pos_axial_shape: Sequence[int] = (), pos_d_axial_embs: Sequence[int] | None = None,
               pos_start_from_zero_prob: float = 1.0, pos_max_offset_to_add: int = 0,
               ff_activation: Any = tl.FastGelu, ff_use_sru: Any = 0, ff_chunk_size: int = 0,
               ff_sparsity: int = 0, loss_sparsity_type: str | None = "mult",
               loss_sparsity: int = 0, loss_d_lowrank: int = 0,
               loss_sparsity_prob: float | None = None, attention_chunk_size: int = 0,
               mode: str = "train") -> tl.Serial:
  """Trax's `ReformerLM` (`declax.models.ReformerLM` under Trax's full argument list):
  tokens `(batch, length)` -> logits `(batch, length, vocab_size)`.

  `attention_type` is a class, a name, or a name with the keyword arguments Trax sets with gin
  (`'SelfAttention(chunk_len=16, n_chunks_before=1)'`); a list alternates per layer. Sparse
  feed-forward (`ff_sparsity`) and sparse output layers (`loss_sparsity`,
  `loss_sparsity_prob`) are not in declax and are refused.
  """
  del loss_sparsity_type, loss_d_lowrank  # only used by the sparse output layers
  if ff_sparsity:
    raise TraxModelError(f"ReformerLM: ff_sparsity={ff_sparsity} is not supported (declax has "
                         f"no sparse feed-forward layers); use ff_sparsity=0")
  if loss_sparsity or loss_sparsity_prob is not None:
    raise TraxModelError("ReformerLM: loss_sparsity / loss_sparsity_prob are not supported "
                         "(declax has no sparse output layers); use loss_sparsity=0, "
                         "loss_sparsity_prob=None (a plain Dense)")
  if isinstance(attention_type, (list, tuple)):
    attention = [_layer_class(a, "attention_type") for a in attention_type]
  else:
    attention = _layer_class(attention_type, "attention_type")
  return reformer.ReformerLM(
      vocab_size, d_model=d_model, d_ff=d_ff, d_attention_key=d_attention_key,
      d_attention_value=d_attention_value, n_layers=n_layers, n_heads=n_heads, dropout=dropout,
      max_len=max_len, attention_type=attention, pos_type=pos_type,
      pos_axial_shape=pos_axial_shape, pos_d_axial_embs=pos_d_axial_embs,
      pos_start_from_zero_prob=pos_start_from_zero_prob,
      pos_max_offset_to_add=pos_max_offset_to_add,
      ff_activation=_layer_class(ff_activation), ff_use_sru=ff_use_sru,
      ff_chunk_size=ff_chunk_size, attention_chunk_size=attention_chunk_size, mode=mode)


# Trax model name -> builder taking Trax's arguments. One entry per family.
TRAX_MODELS: dict[str, Callable[..., tl.Layer]] = {
    "MLP": MLP,
    "RNNLM": RNNLM,
    "ReformerLM": ReformerLM,
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
