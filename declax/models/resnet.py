"""Residual convolutional networks, Trax's `WideResnet` and `Resnet50`, on NHWC images.

Both keep BatchNorm running statistics in the `'batch_stats'` collection (the training loop
updates it in `'train'` mode; `'eval'` mode reads it), end in a global average pool, a float32
`Dense` head and `LogSoftmax`, so they output log-probabilities like the other classifiers
(train with `tl.CrossEntropyLoss()`). `dtype='bfloat16'` runs the convolutions in bfloat16 with
float32 parameters and statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.models.blocks import compute_dtype


def _head(n_classes: int) -> list:
  """Global average pool -> float32 Dense -> LogSoftmax."""
  return [tl.Mean(axis=(1, 2)),
          tl.Dense(n_classes, kernel_axes=("embed", None), bias_axes=(None,), dtype=jnp.float32),
          tl.LogSoftmax()]


# ---- Wide ResNet ---------------------------------------------------------------------------------


def WideResnetBlock(channels: int, strides: Sequence[int] = (1, 1),  # noqa: N802 (Trax's name)
                    bn_momentum: float = 0.9, mode: str = "train", dtype: Any = None,
                    project: bool = False) -> tl.Residual:
  """Pre-activation residual block: `(BatchNorm, Relu, Conv 3x3) x 2` around a shortcut that
  is the identity, or a strided 1x1 `Conv` when `project` (channels or resolution change)."""
  def norm_relu() -> list:
    return [tl.BatchNorm(momentum=bn_momentum, mode=mode, dtype=dtype), tl.Relu()]

  shortcut = None
  if project:  # a named Serial, so the printout tells the shortcut from the main path
    shortcut = tl.Serial(tl.Conv(channels, (1, 1), strides, dtype=dtype), name="Shortcut")
  return tl.Residual(
      norm_relu(),
      tl.Conv(channels, (3, 3), strides, padding="SAME", dtype=dtype),
      norm_relu(),
      tl.Conv(channels, (3, 3), padding="SAME", dtype=dtype),
      shortcut=shortcut,
  )


def WideResnetGroup(n_blocks: int, channels: int, strides: Sequence[int] = (1, 1),  # noqa: N802
                    bn_momentum: float = 0.9, mode: str = "train", dtype: Any = None) -> list:
  """`n_blocks` blocks; the first changes the width/resolution through a projection shortcut."""
  return [WideResnetBlock(channels, strides if i == 0 else (1, 1), bn_momentum, mode, dtype,
                          project=i == 0)
          for i in range(n_blocks)]


def WideResnet(n_blocks: int = 3, widen_factor: int = 1, n_output_classes: int = 10,  # noqa: N802
               bn_momentum: float = 0.9, mode: str = "train", base_width: int = 16,
               dtype: Any = None) -> tl.Serial:
  """A Wide ResNet (Zagoruyko & Komodakis): images NHWC -> log-probabilities
  `(batch, n_output_classes)`.

  `ToFloat -> Conv 3x3 (base_width) -> 3 groups of n_blocks pre-activation blocks (widths
  base_width * widen_factor * (1, 2, 4), strides 1, 2, 2) -> BatchNorm -> Relu -> global mean ->
  Dense -> LogSoftmax`. WRN-d-k in the paper's naming is `n_blocks=(d - 4) // 6,
  widen_factor=k`. Any image size works (the pool is global).

  ```python
  model = WideResnet(n_blocks=1, widen_factor=1, n_output_classes=10, base_width=8)
  variables = model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 1)))   # params + batch_stats
  log_probs, updates = model.apply(variables, images, mutable=['batch_stats'])
  ```
  """
  dtype = compute_dtype(dtype)
  width = base_width * widen_factor
  groups = [WideResnetGroup(n_blocks, width * 2**i, (1, 1) if i == 0 else (2, 2), bn_momentum,
                            mode, dtype)
            for i in range(3)]
  return tl.Serial(
      tl.ToFloat(),
      tl.Conv(base_width, (3, 3), padding="SAME", dtype=dtype),
      groups,
      tl.BatchNorm(momentum=bn_momentum, mode=mode, dtype=dtype),
      tl.Relu(),
      _head(n_output_classes),
  )


# ---- ResNet-50 -----------------------------------------------------------------------------------


def _bottleneck(kernel_size: int, filters: Sequence[int], strides: Sequence[int], norm: Callable,
                non_linearity: Callable, dtype: Any, project: bool) -> list:
  f1, f2, f3 = filters
  main = [
      tl.Conv(f1, (1, 1), strides, dtype=dtype), norm(), non_linearity(),
      tl.Conv(f2, (kernel_size, kernel_size), padding="SAME", dtype=dtype), norm(),
      non_linearity(),
      tl.Conv(f3, (1, 1), dtype=dtype), norm(),
  ]
  shortcut = None
  if project:
    shortcut = tl.Serial(tl.Conv(f3, (1, 1), strides, dtype=dtype), norm(), name="Shortcut")
  return [tl.Residual(main, shortcut=shortcut), non_linearity()]


def Resnet50(d_hidden: int = 64, n_output_classes: int = 1001, mode: str = "train",  # noqa: N802
             non_linearity: Callable[[], tl.Layer] = tl.Relu, bn_momentum: float = 0.999,
             dtype: Any = None) -> tl.Serial:
  """ResNet-50 (He et al.), Trax's layout: images NHWC -> log-probabilities.

  `Conv 7x7/2 -> BatchNorm -> Relu -> MaxPool 3x3/2 -> 4 stages of bottleneck blocks (3, 4, 6,
  3 blocks; widths d_hidden * (1, 2, 4, 8), outputs 4x that; strides 1, 2, 2, 2) -> global
  mean -> Dense -> LogSoftmax`. Trax's `ConvBlock` (with a projection shortcut) starts each
  stage, `IdentityBlock`s follow. About 25.6M parameters at the defaults.

  ```python
  model = Resnet50(d_hidden=8, n_output_classes=10)   # a narrow one for small images
  variables = model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))
  ```
  """
  dtype = compute_dtype(dtype)

  def norm() -> tl.BatchNorm:
    return tl.BatchNorm(momentum=bn_momentum, mode=mode, dtype=dtype)

  stages = []
  for stage, (n_blocks, strides) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2), strict=True)):
    width = d_hidden * 2**stage
    filters = (width, width, 4 * width)
    stages += [_bottleneck(3, filters, (strides, strides) if i == 0 else (1, 1), norm,
                           non_linearity, dtype, project=i == 0)
               for i in range(n_blocks)]
  return tl.Serial(
      tl.ToFloat(),
      tl.Conv(d_hidden, (7, 7), (2, 2), padding="SAME", dtype=dtype),
      norm(),
      non_linearity(),
      tl.MaxPool(pool_size=(3, 3), strides=(2, 2)),
      stages,
      _head(n_output_classes),
  )
