"""Small classifiers: Trax's classic multilayer perceptron `MLP`, and a LeNet-style `CNN`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.models.blocks import compute_dtype


def MLP(layer_widths: Sequence[int] = (128, 64), n_classes: int = 10,  # noqa: N802 (Trax's name)
        activation: Callable[[], tl.Layer] | str = tl.Relu, flatten: bool = True,
        mode: str = "train", dtype: Any = None) -> tl.Layer:
  """`Flatten -> (Dense, activation) * len(layer_widths) -> Dense(n_classes) -> LogSoftmax`.

  The output is log-probabilities, so train it with `tl.CrossEntropyLoss` (and measure it with
  `tl.Accuracy`), as in Trax.

  **Arguments**
  - `layer_widths`: the widths of the hidden `Dense` layers.
  - `n_classes`: the number of output classes.
  - `activation`: a layer class (or its name in `declax.layers`, e.g. `'Gelu'`) used after every
    hidden layer.
  - `flatten`: flatten everything but the batch axis first (e.g. `(B, 28, 28, 1) -> (B, 784)`).
  - `mode`: accepted for a uniform model signature; an MLP behaves the same in every mode.
  - `dtype`: compute dtype of the hidden layers (e.g. `'bfloat16'`); parameters stay float32
    and the output layer computes in float32.

  **Returns** a `Serial` mapping `(batch, ...)` inputs to `(batch, n_classes)` log-probabilities.

  ```python
  model = MLP(layer_widths=(32,), n_classes=3)
  variables = model.init(jax.random.key(0), jnp.zeros((4, 8, 8, 1)))
  model.apply(variables, jnp.zeros((4, 8, 8, 1))).shape   # (4, 3)
  ```
  """
  del mode  # no mode-dependent layers
  if isinstance(activation, str):
    activation = getattr(tl, activation)
  dtype = compute_dtype(dtype)
  hidden = [[tl.Dense(width, dtype=dtype), activation()] for width in layer_widths]
  return tl.Serial(
      tl.Flatten() if flatten else None,
      hidden,
      tl.Dense(n_classes, dtype=jnp.float32),  # a small head: float32 log-probabilities
      tl.LogSoftmax(),
  )


def CNN(filters: Sequence[int] = (32, 64), kernel_size: Sequence[int] = (3, 3),  # noqa: N802
        hidden: Sequence[int] = (128,), n_classes: int = 10,
        activation: Callable[[], tl.Layer] | str = tl.Relu, dropout: float = 0.0,
        mode: str = "train", dtype: Any = None) -> tl.Layer:
  """`(Conv 'SAME', activation, MaxPool 2x2) * len(filters) -> Flatten -> MLP head`.

  Outputs log-probabilities (train with `tl.CrossEntropyLoss`), like `MLP`.

  **Arguments**
  - `filters`: output channels of each convolution; each is followed by a 2x2 max-pool.
  - `kernel_size`: the convolutions' window.
  - `hidden`: widths of the `Dense` layers after flattening.
  - `n_classes`, `activation`: as in `MLP`.
  - `dropout`: rate before the output layer (active in `mode='train'` only).
  - `dtype`: compute dtype of the convolutions and hidden layers, as in `MLP`.

  **Returns** a `Serial` mapping NHWC images `(batch, h, w, c)` to `(batch, n_classes)`.

  ```python
  model = CNN(filters=(8,), hidden=(16,), n_classes=10)
  model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
  ```
  """
  if isinstance(activation, str):
    activation = getattr(tl, activation)
  dtype = compute_dtype(dtype)
  convs = [[tl.Conv(f, tuple(kernel_size), padding="SAME", dtype=dtype), activation(),
            tl.MaxPool((2, 2))] for f in filters]
  head = [[tl.Dense(width, dtype=dtype), activation()] for width in hidden]
  return tl.Serial(
      convs,
      tl.Flatten(),
      head,
      tl.Dropout(dropout, mode=mode) if dropout else None,
      tl.Dense(n_classes, dtype=jnp.float32),
      tl.LogSoftmax(),
  )
