"""Trax's Atari models: `AtariCnn`, `AtariCnnBody` and `FrameStackMLP`, on observations
`(batch, time, height, width, channels)` (frames stacked along the channels).

`dtype` (declax's, e.g. `'bfloat16'`) is the compute dtype of every convolution and dense
layer; parameters and the outputs stay float32."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import declax.layers as tl
from declax.models.blocks import compute_dtype, float32_logits

__all__ = ["AtariCnn", "AtariCnnBody", "FrameStackMLP"]


def _frame_stack(n_frames: int) -> list:
  """Stacks each frame with the `n_frames - 1` before it along the channels (time axis 1)."""
  if n_frames < 1:
    raise ValueError(f"n_frames must be >= 1, got {n_frames}")
  if n_frames == 1:
    return []
  return [tl.Branch(*[[tl.ShiftRight() for _ in range(n)] for n in range(n_frames)]),
          tl.Concatenate(n_items=n_frames, axis=-1)]


def _bytes_to_floats() -> tl.Layer:
  return tl.Fn("BytesToFloats", lambda x: x / 255.0)


def AtariCnn(n_frames: int = 4, hidden_sizes: Sequence[int] = (32, 32),  # noqa: N802
             output_size: int = 128, mode: str = "train", dtype: Any = None) -> tl.Serial:
  """Frame stack, two stride-2 5x5 convolutions, `Dense(output_size)` with ReLUs:
  `(B, T, H, W, C)` bytes -> `(B, T, output_size)`.

  ```python
  model = AtariCnn()
  variables = model.init(jax.random.key(0), jnp.zeros((2, 3, 16, 16, 3)))   # (2, 3, 128)
  ```
  """
  del mode
  dtype = compute_dtype(dtype)
  return tl.Serial(
      _bytes_to_floats(), _frame_stack(n_frames),
      tl.Conv(hidden_sizes[0], (5, 5), (2, 2), "SAME", dtype=dtype), tl.Relu(),
      tl.Conv(hidden_sizes[1], (5, 5), (2, 2), "SAME", dtype=dtype), tl.Relu(),
      tl.Flatten(n_axes_to_keep=2), tl.Dense(output_size, dtype=dtype), tl.Relu(),
      float32_logits(dtype),
  )


def AtariCnnBody(n_frames: int = 4, hidden_sizes: Sequence[int] = (32, 64, 64),  # noqa: N802
                 output_size: int = 512, mode: str = "train",
                 kernel_initializer: Callable | None = None, padding: str = "VALID",
                 dtype: Any = None) -> tl.Serial:
  """The DQN body (8x8/4, 4x4/2, 3x3/1 convolutions, `Dense(output_size)`), as Trax's.

  ```python
  AtariCnnBody(hidden_sizes=(4, 4, 4), output_size=8)
  ```
  """
  del mode
  dtype = compute_dtype(dtype)
  init = {} if kernel_initializer is None else {"kernel_initializer": kernel_initializer}
  init["dtype"] = dtype
  return tl.Serial(
      _bytes_to_floats(), _frame_stack(n_frames),
      tl.Conv(hidden_sizes[0], (8, 8), (4, 4), padding=padding, **init), tl.Relu(),
      tl.Conv(hidden_sizes[1], (4, 4), (2, 2), padding=padding, **init), tl.Relu(),
      tl.Conv(hidden_sizes[2], (3, 3), (1, 1), padding=padding, **init), tl.Relu(),
      tl.Flatten(n_axes_to_keep=2), tl.Dense(output_size, dtype=dtype), tl.Relu(),
      float32_logits(dtype),
  )


def FrameStackMLP(n_frames: int = 4, hidden_sizes: Sequence[int] = (64,),  # noqa: N802
                  output_size: int = 64, mode: str = "train", dtype: Any = None) -> tl.Serial:
  """Frame stack, then `Dense`+ReLU layers and `Dense(output_size)`, on `(B, T, features)`.

  ```python
  FrameStackMLP(n_frames=2, hidden_sizes=(8,), output_size=4)
  ```
  """
  del mode
  dtype = compute_dtype(dtype)
  return tl.Serial(
      _frame_stack(n_frames),
      [[tl.Dense(d, dtype=dtype), tl.Relu()] for d in hidden_sizes],
      tl.Dense(output_size, dtype=dtype),
      float32_logits(dtype),
  )
