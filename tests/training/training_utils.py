"""Tiny synthetic data and models for the training tests (fast to compile on 2 CPU cores).

Imported as `from tests.training.training_utils import ...` (the repo root is on the path).
"""

from __future__ import annotations

import numpy as np

import declax.layers as tl


class ArrayBatches:
  """An endless, deterministic iterator of `(x, y)` batches with `get_state`/`set_state`.

  Batch `i` depends only on `(seed, i)`, like a real checkpointable pipeline.
  """

  def __init__(self, batch_size: int = 8, seed: int = 0, shape: tuple = (4, 4, 1),
               n_classes: int = 3, with_weights: bool = False):
    self.batch_size, self.seed, self.shape = batch_size, seed, shape
    self.n_classes, self.with_weights = n_classes, with_weights
    self.index = 0
    self._w = np.random.default_rng(1234).normal(size=(int(np.prod(shape)), n_classes))

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng([self.seed, self.index])
    self.index += 1
    x = rng.normal(size=(self.batch_size, *self.shape)).astype(np.float32)
    y = np.argmax(x.reshape(self.batch_size, -1) @ self._w, axis=-1).astype(np.int32)
    if self.with_weights:
      return x, y, np.ones(y.shape, np.float32)
    return x, y

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = state["index"]


def tiny_classifier(n_classes: int = 3, dropout: float = 0.0, batch_norm: bool = False,
                    mode: str = "train") -> tl.Layer:
  """Flatten -> Dense(8) [-> BatchNorm] -> Relu [-> Dropout] -> Dense -> LogSoftmax."""
  return tl.Serial(
      tl.Flatten(),
      tl.Dense(8),
      tl.BatchNorm(axis=(0,), mode=mode) if batch_norm else None,
      tl.Relu(),
      tl.Dropout(dropout, mode=mode) if dropout else None,
      tl.Dense(n_classes),
      tl.LogSoftmax(),
  )
