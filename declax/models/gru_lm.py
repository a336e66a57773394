"""Trax's `GRULM`: a GRU language model."""

from __future__ import annotations

import declax.layers as tl

__all__ = ["GRULM"]


def GRULM(vocab_size: int = 256, d_model: int = 512, n_layers: int = 1,  # noqa: N802
          mode: str = "train") -> tl.Serial:
  """A GRU language model, as Trax's: tokens `(batch, length)` -> logits `(batch, length,
  vocab_size)` through `ShiftRight -> Embedding -> n_layers x GRU(d_model) -> Dense`.

  ```python
  model = GRULM(vocab_size=16, d_model=8)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 5), jnp.int32))
  ```
  """
  return tl.Serial(
      tl.ShiftRight(mode=mode),
      tl.Embedding(vocab_size, d_model),
      [tl.GRU(d_model, mode=mode) for _ in range(n_layers)],
      tl.Dense(vocab_size),
  )
