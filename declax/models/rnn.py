"""A recurrent language model, Trax's `RNNLM`, on declax's `LSTM`/`GRU` sequence layers."""

from __future__ import annotations

from typing import Any

import declax.layers as tl
from declax.models.blocks import compute_dtype, float32_logits

__all__ = ["RNNLM"]

_CELLS = {"LSTM": tl.LSTM, "GRU": tl.GRU}


def RNNLM(vocab_size: int, d_model: int = 512, n_layers: int = 2,  # noqa: N802 (Trax's name)
          rnn_cell: str | type = "LSTM", dropout: float = 0.1, mode: str = "train",
          dtype: Any = None) -> tl.Serial:
  """A recurrent language model: tokens `(batch, length)` int -> logits `(batch, length,
  vocab_size)`, position `t` predicting token `t` from tokens `< t`.

  `ShiftRight -> Embedding -> Dropout -> n_layers x (RNN(d_model) -> Dropout) ->
  Dense(vocab_size)`. In `'predict'` mode each RNN keeps its state in the `'cache'` collection,
  so `declax.decoding.autoregressive_sample` feeds one token per step.

  **Arguments**
  - `vocab_size`, `d_model` (embedding width and RNN units), `n_layers`.
  - `rnn_cell`: `'LSTM'` or `'GRU'` (or a sequence layer class taking `(n_units, mode=...)`).
  - `dropout` (after the embedding and after every RNN), `mode`, `dtype` (compute dtype,
    e.g. `'bfloat16'`; parameters and logits stay float32).

  ```python
  model = RNNLM(vocab_size=256, d_model=64, n_layers=2)     # ShiftRight, Embedding_256_64, ...
  variables = model.init(jax.random.key(0), jnp.zeros((2, 32), jnp.int32))
  logits = tl.with_mode(model, 'eval').apply(variables, tokens)   # (2, 32, 256)
  ```
  """
  if isinstance(rnn_cell, str):
    if rnn_cell not in _CELLS:
      raise ValueError(f"rnn_cell must be one of {sorted(_CELLS)} or a layer class, got "
                       f"{rnn_cell!r}")
    rnn_cell = _CELLS[rnn_cell]
  dtype = compute_dtype(dtype)
  return tl.Serial(
      tl.ShiftRight(mode=mode),
      tl.Embedding(vocab_size, d_model, dtype=dtype),
      tl.Dropout(dropout, mode=mode),
      [[rnn_cell(d_model, mode=mode, dtype=dtype), tl.Dropout(dropout, mode=mode)]
       for _ in range(n_layers)],
      tl.Dense(vocab_size, kernel_axes=("embed", "vocab"), bias_axes=("vocab",), dtype=dtype),
      float32_logits(dtype),
  )
