"""Trax's `GRULM`: a GRU language model."""

from __future__ import annotations

from typing import Any

import declax.layers as tl
from declax.models.blocks import compute_dtype, float32_logits

__all__ = ["GRULM"]


def GRULM(vocab_size: int = 256, d_model: int = 512, n_layers: int = 1,  # noqa: N802
          mode: str = "train", dtype: Any = None) -> tl.Serial:
  """A GRU language model, as Trax's: tokens `(batch, length)` -> logits `(batch, length,
  vocab_size)` through `ShiftRight -> Embedding -> n_layers x GRU(d_model) -> Dense`.

  `dtype` (declax's): the compute dtype, e.g. `'bfloat16'`; parameters, the GRU state and the
  logits stay float32.

  ```python
  model = GRULM(vocab_size=16, d_model=8)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 5), jnp.int32))
  ```
  """
  dtype = compute_dtype(dtype)
  return tl.Serial(
      tl.ShiftRight(mode=mode),
      tl.Embedding(vocab_size, d_model, dtype=dtype),
      [tl.GRU(d_model, mode=mode, dtype=dtype) for _ in range(n_layers)],
      tl.Dense(vocab_size, dtype=dtype),
      float32_logits(dtype),
  )
