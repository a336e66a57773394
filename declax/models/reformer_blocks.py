"""The Reformer's building blocks (see `declax.models.reformer`): the attention chosen by
`attention_type`, the chunked feed-forward (or SRU), the positional encoder and `DecoderBlock`, a
pair of `ReversibleHalfResidual`s.

```python
block = tl.ReversibleSerial(DecoderBlock(64, 128, 32, 32, 2, 'CausalAttention', 0.0, 'Relu', 0.0,
                                          0, 0, 0))   # (x1, x2) -> (y1, y2)
```
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.errors import DeclaxError, did_you_mean
from declax.layers.position_encodings import AxialShapeError
from declax.models.transformer import EncoderPositionalEncoding

POS_TYPES = (None, "sin-cos", "fixed-base", "infinite", "infinite-affine", "time-bin", "no",
             "axial")


class ReformerConfigError(DeclaxError, ValueError):
  """A Reformer argument that cannot work (unknown attention or position type, ...)."""


# ------------------------------------------------------------------------------------------------
# Parts: attention, feed-forward, position encodings
# ------------------------------------------------------------------------------------------------


def _layer_class(value: Any, what: str) -> Callable:
  if not isinstance(value, str):
    return value
  names = [n for n in dir(tl) if n[:1].isupper()]
  if value not in names:
    raise ReformerConfigError(f"unknown {what} {value!r}: use a declax.layers class name, e.g. "
                              f"'LSHSelfAttention'{did_you_mean(value, names)}")
  return getattr(tl, value)


def _fields(cls: Callable) -> set:
  target = cls.func if isinstance(cls, functools.partial) else cls
  if dataclasses.is_dataclass(target):
    return {f.name for f in dataclasses.fields(target)}
  return set(inspect.signature(target).parameters)


def _takes_any_keyword(cls: Callable) -> bool:
  """A factory with `**kwargs` (e.g. `PureLSHSelfAttentionWrapper`) passes them on."""
  target = cls.func if isinstance(cls, functools.partial) else cls
  if dataclasses.is_dataclass(target):
    return False
  return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())


def _attention(attention_type: Any, d_model: int, n_heads: int, d_qk: int, d_v: int,
               causal: bool, masked: bool, dropout: float, chunk_size: int, mode: str,
               max_len: int, attention_kwargs: dict | None = None,
               dtype: Any = None) -> tl.Layer:
  """Trax's `ApplyAttentionLayer`: efficient-attention arguments, else the plain ones; `dtype`
  (the compute dtype) to a layer that takes it."""
  cls = _layer_class(attention_type, "attention_type")
  if dtype is not None:
    if "dtype" not in _fields(cls):
      raise ReformerConfigError(f"attention_type {getattr(cls, '__name__', cls)!r} takes no "
                                f"dtype, so it cannot compute in {jnp.dtype(dtype).name}; use "
                                "dtype=None or an attention layer with a dtype field")
    cls = functools.partial(cls, dtype=dtype)
  if attention_kwargs:  # each layer takes the ones it has (LSH's n_hashes skip SelfAttention)
    taken = _fields(cls)
    every = _takes_any_keyword(cls)
    cls = functools.partial(cls, **{k: v for k, v in attention_kwargs.items()
                                    if every or k in taken})
  fields = _fields(cls)
  given = cls.keywords if isinstance(cls, functools.partial) else {}
  if "d_qk" in fields:
    extra = {}
    name = getattr(getattr(cls, "func", cls), "__name__", "")
    if "predict_mem_len" in fields and "predict_mem_len" not in given \
        and not given.get("chunk_len") and "LSH" not in name:
      extra["predict_mem_len"] = max_len  # unchunked: remember the whole sequence
    attention = cls(n_heads=n_heads, d_qk=d_qk, d_v=d_v, causal=causal, masked=masked,
                    output_dropout=dropout, attention_dropout=dropout, mode=mode, **extra)
  else:
    extra = {"max_inference_length": max_len} if "max_inference_length" in fields else {}
    attention = cls(d_model, n_heads=n_heads, dropout=dropout, mode=mode, **extra)
  return tl.Chunk(attention, chunk_size) if chunk_size else attention


# Trax's `tl.SRU` (used by FeedForward's `ff_use_sru` and ReformerShortenLM); in 'predict' mode it
# keeps its state in the 'cache' collection, so the models decode through it.
SRU = tl.SRU


def FeedForward(d_model: int, d_ff: int, dropout: float, activation: Any,  # noqa: N802
                ff_dropout: float, ff_chunk_size: int, ff_use_sru: Any, center_layernorm: bool,
                mode: str, dtype: Any = None) -> tl.Layer:
  """Trax's `FeedForwardWithOptions` (without sparsity): `LayerNorm -> Dense(d_ff) -> activation
  -> Dropout -> Dense(d_model) -> Dropout`, chunked over positions by `ff_chunk_size`, computing
  in `dtype`."""
  activation = _layer_class(activation, "ff_activation")
  layers = tl.Serial(
      tl.LayerNorm(center=center_layernorm, dtype=dtype),
      tl.Dense(d_ff, dtype=dtype), activation(),
      tl.Dropout(ff_dropout, shared_axes=(-2,), mode=mode),
      tl.Dense(d_model, kernel_axes=("mlp", "embed"), bias_axes=("embed",), dtype=dtype),
      tl.Dropout(dropout, shared_axes=(-2,), mode=mode),
  )
  if ff_chunk_size > 0:
    layers = tl.BatchLeadingAxes(tl.Chunk(layers, ff_chunk_size))
  if ff_use_sru:
    n_layers, n_units = ff_use_sru if isinstance(ff_use_sru, (list, tuple)) else (ff_use_sru, 32)
    sru = [tl.LayerNorm(center=center_layernorm, dtype=dtype), tl.Dense(n_units, dtype=dtype),
           *[SRU(n_units, mode=mode, dtype=dtype) for _ in range(n_layers)],
           tl.Dense(d_model, dtype=dtype)]
    layers = tl.Residual(sru, shortcut=layers)
  return layers


def PositionalEncoder(mode: str, dropout: float, max_len: int, pos_type: str | None = None,  # noqa: N802
                      pos_axial_shape: Sequence[int] | None = None,
                      pos_d_axial_embs: Sequence[int] | None = None,
                      pos_start_from_zero_prob: float = 1.0, pos_max_offset_to_add: int = 0,
                      d_model: int | None = None, encoder: bool = False) -> tl.Layer:
  """The position encoding for `pos_type` (Trax's `PositionalEncoder`). `encoder=True`: an
  encoder that re-reads its whole input on every decoding step (no position cache)."""
  if pos_type not in POS_TYPES:
    raise ReformerConfigError(f"unknown pos_type {pos_type!r}: use one of {POS_TYPES}"
                              f"{did_you_mean(str(pos_type), [str(p) for p in POS_TYPES[1:]])}")
  if encoder and mode == "predict" and pos_type is not None:
    mode = "eval"
  if pos_type is None:
    cls = EncoderPositionalEncoding if encoder else tl.PositionalEncoding
    return cls(max_len=max_len, dropout=dropout, start_from_zero_prob=pos_start_from_zero_prob,
               max_offset_to_add=pos_max_offset_to_add, mode=mode)
  if pos_type == "axial":
    shape, d_embs = tuple(pos_axial_shape or ()), tuple(pos_d_axial_embs or ())
    if not shape or math.prod(shape) != max_len:
      raise AxialShapeError(f"pos_axial_shape {shape} multiplies to {math.prod(shape)}, but "
                            f"max_len is {max_len}; choose axes whose product is max_len, e.g. "
                            f"{_two_axes(max_len)}")
    if d_model is not None and sum(d_embs) != d_model:
      raise AxialShapeError(f"pos_d_axial_embs {d_embs} sum to {sum(d_embs)}, but d_model is "
                            f"{d_model}; they must sum to d_model")
    return tl.AxialPositionalEncoding(shape=shape, d_embs=d_embs, dropout=dropout,
                                      dropout_broadcast_dims=tuple(range(1, len(shape) + 1)),
                                      mode=mode)
  return {
      "sin-cos": lambda: tl.SinCosPositionalEncoding(mode=mode),
      "fixed-base": lambda: tl.FixedBasePositionalEncoding(mode=mode),
      "infinite": lambda: tl.InfinitePositionalEncoding(affine=False, mode=mode),
      "infinite-affine": lambda: tl.InfinitePositionalEncoding(mode=mode),
      "time-bin": lambda: tl.TimeBinPositionalEncoding(mode=mode),
      "no": lambda: tl.Serial(),
  }[pos_type]()


def _two_axes(n: int) -> tuple:
  a = 2 ** (int(math.log2(n)) // 2) if n & (n - 1) == 0 else 1
  return (a, n // a)


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------


def DecoderBlock(d_model, d_ff, d_attention_key, d_attention_value, n_heads,  # noqa: N802
                 attention_type, dropout, ff_activation, ff_dropout, ff_use_sru, ff_chunk_size,
                 attention_chunk_size, n_attention_layers=1, n_feedforward_layers=1,
                 center_layernorm=True, mode="train", max_len=2048,
                 attention_kwargs=None, dtype=None) -> list:
  """Trax's reversible decoder block: `[HalfResidual(attention), Swap] * n_attention_layers +
  [HalfResidual(feed-forward), Swap] * n_feedforward_layers`, on `(x1, x2) -> (y1, y2)`;
  `dtype` is the compute dtype of every layer in it."""
  def attention_half():
    attention = _attention(attention_type, d_model, n_heads, d_attention_key, d_attention_value,
                           True, False, dropout, attention_chunk_size, mode, max_len,
                           attention_kwargs, dtype)
    return [tl.ReversibleHalfResidual(tl.LayerNorm(center=center_layernorm, dtype=dtype),
                                      attention_layer=attention,
                                      name="ReversibleHalfResidualDecoderAttn"),
            tl.ReversibleSwap()]

  def ff_half():
    ff = FeedForward(d_model, d_ff, dropout, ff_activation, ff_dropout, ff_chunk_size,
                     ff_use_sru, center_layernorm, mode, dtype)
    return [tl.ReversibleHalfResidual(ff, name="ReversibleHalfResidualDecoderFF"),
            tl.ReversibleSwap()]

  return ([attention_half() for _ in range(n_attention_layers)]
          + [ff_half() for _ in range(n_feedforward_layers)])


def _decoder_blocks(n_layers, attention_type, **kwargs) -> list:
  types = list(attention_type) if isinstance(attention_type, (list, tuple)) else [attention_type]
  if n_layers % len(types):
    raise ReformerConfigError(f"n_layers={n_layers} must be a multiple of the number of "
                              f"attention types ({len(types)})")
  return [DecoderBlock(attention_type=types[i % len(types)], **kwargs) for i in range(n_layers)]


