"""Trax's `NeuralGPU` (arXiv:1511.08228): a convolutional GRU applied `steps` times."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.models.blocks import compute_dtype, float32_logits

__all__ = ["ConvDiagonalGRU", "DiagonalGate", "NeuralGPU", "SaturationCost"]


def SaturationCost(x, limit: float = 0.9):  # noqa: N802 (Trax's name)
  """`min(0, |x| - limit)`: the Neural GPU's saturation penalty."""
  return jnp.minimum(0, jnp.abs(x) - limit)


def _diagonal_gate(x):
  depth = x.shape[-1] // 3
  if 3 * depth != x.shape[-1]:
    raise ValueError(f"DiagonalGate: the depth ({x.shape[-1]}) must be divisible by 3")
  x = jnp.pad(x, [(0, 0), (0, 0), (1, 1), (0, 0)])
  parts = [x[:, :, :-2, :depth], x[:, :, 1:-1, depth : 2 * depth], x[:, :, 2:, 2 * depth :]]
  return jnp.concatenate(parts, axis=3)


def DiagonalGate() -> tl.Layer:  # noqa: N802 (Trax's name)
  """Shifts the three thirds of the channels by -1, 0, +1 along axis 2.

  ```python
  DiagonalGate().apply({}, jnp.ones((1, 1, 4, 6))).shape   # (1, 1, 4, 6)
  ```
  """
  return tl.Fn("DiagonalGate", _diagonal_gate)


def ConvDiagonalGRU(units: int, kernel_size: tuple = (3, 3), mode: str = "train",  # noqa: N802
                    dtype: Any = None) -> tl.Layer:
  """A convolutional GRU with the diagonal memory gate, `HardSigmoid` gates and `HardTanh`
  candidates; its convolutions compute in `dtype`."""
  return tl.GeneralGRUCell(
      lambda: tl.Conv(filters=units, kernel_size=kernel_size, padding="SAME", dtype=dtype),
      memory_transform_fn=DiagonalGate, gate_nonlinearity=tl.HardSigmoid,
      candidate_nonlinearity=tl.HardTanh, mode=mode)


def NeuralGPU(d_feature: int = 96, steps: int = 16, vocab_size: int = 2,  # noqa: N802
              mode: str = "train", dtype: Any = None) -> tl.Serial:
  """`Embedding -> steps x one shared ConvDiagonalGRU -> Dense(vocab_size)`, as Trax's, on
  token grids `(batch, height, width)`. `dtype` (declax's): the compute dtype, e.g.
  `'bfloat16'` (the grid state too: the steps are depth, not a long sum); parameters and logits
  stay float32.

  ```python
  model = NeuralGPU(d_feature=6, steps=2, vocab_size=3)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 4, 4), jnp.int32))
  ```
  """
  dtype = compute_dtype(dtype)
  core = ConvDiagonalGRU(units=d_feature, mode=mode, dtype=dtype)
  return tl.Serial(
      tl.Embedding(vocab_size=vocab_size, d_feature=d_feature, dtype=dtype),
      [core] * steps,  # one instance: the steps share their weights
      tl.Dense(vocab_size, dtype=dtype),
      float32_logits(dtype),
  )
