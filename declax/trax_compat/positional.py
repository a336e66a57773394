"""Trax's `PositionalEncoding`: a trained `(max_len, d_feature)` table started from sinusoids.

`declax.layers.PositionalEncoding` (today) adds fixed sinusoids and has no parameters; a Trax
checkpoint has a trained table, so the Trax-equivalent models in `declax.trax_compat` use this
layer. It prints as `PositionalEncoding`.

```python
enc = TrainedPositionalEncoding(max_len=64)
variables = enc.init(jax.random.key(0), jnp.zeros((2, 16, 32)))   # params: {'weights': (64, 32)}
```
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer, describe
from declax.layers.core import apply_dropout, sinusoidal_encoding

__all__ = ["TrainedPositionalEncoding"]


class TrainedPositionalEncoding(Layer):
  """Adds rows of a trained position table to `(batch, length, d_feature)` inputs, as Trax's
  `PositionalEncoding` (Trax's argument names; `use_bfloat16`, random start offsets and the
  `d_feature` projection are not supported).

  The table `weights` `(max_len, d_feature)` starts as Trax's sinusoids. In `'train'` mode with
  `dropout > 0` some positions get no encoding (mask shared along `dropout_broadcast_dims`).
  In `'predict'` mode the next position lives in the `'cache'` collection (`position`), unless
  `full_sequence` (an encoder's, which sees its whole input on every decoding step): then
  `'predict'` acts as `'eval'`.

  ```python
  y = TrainedPositionalEncoding(max_len=64, mode='eval').apply(variables, x)   # x + table[:16]
  ```
  """

  max_len: int = 2048
  dropout: float = 0.0
  dropout_broadcast_dims: Sequence[int] = (-2,)
  mode: str = "train"
  full_sequence: bool = False

  @property
  def default_label(self) -> str:
    return "PositionalEncoding"

  @nn.compact
  def forward(self, x):
    if x.ndim != 3:
      raise ValueError(f"expects inputs of shape (batch, length, d_feature), got {describe([x])}")
    length, d_feature = x.shape[1], x.shape[2]
    table = self.param("weights", lambda _, shape: sinusoidal_encoding(jnp.arange(shape[0]),
                                                                       shape[1]),
                       (self.max_len, d_feature))
    if table.shape != (self.max_len, d_feature):
      raise ValueError(f"input {describe([x])} has {d_feature} features, but the position table "
                       f"is {table.shape} (max_len={self.max_len})")
    if self.mode == "predict" and not self.full_sequence:
      position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
      start = position.value
      if self.is_mutable_collection("cache") and not self.is_initializing():
        position.value = start + length
      rows = jax.lax.dynamic_slice_in_dim(table, start, length, axis=0)
    else:
      if length > self.max_len:
        raise ValueError(f"sequence length {length} ({describe([x])}) exceeds max_len="
                         f"{self.max_len}")
      rows = table[:length]
    rows = rows[None].astype(x.dtype)
    if self.mode == "train" and self.dropout > 0.0:
      shared = tuple(d % 3 for d in self.dropout_broadcast_dims) + (0,)
      rows = apply_dropout(self, jnp.broadcast_to(rows, x.shape), self.dropout, shared)
    return x + rows
