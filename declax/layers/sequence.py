"""Where tokens sit in a sequence: `ShiftRight` (teacher forcing) and `PositionalEncoding`
(Trax's trained table of Transformer sinusoids, with a decoding position in `'predict'` mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.layers.base import Layer
from declax.layers.core import apply_dropout
from declax.layers.partitioning import param_init
from declax.layers.stack import describe


class ShiftRight(Layer):
  """Shifts sequences right by `n_positions` on axis 1, padding with zeros (prints as
  `ShiftRight(1)`); the identity in `'predict'` mode, where tokens arrive one at a time.

  ```python
  tl.ShiftRight().apply({}, jnp.array([[1, 2, 3]]))   # [[0, 1, 2]]
  ```
  """

  n_positions: int = 1
  mode: str = "train"

  @property
  def default_label(self) -> str:
    return f"ShiftRight({self.n_positions})"

  def contract(self, x):
    if self.mode != "predict":
      chex.assert_shape(x, (None, None, ...), exception_type=ValueError, custom_message=(
          f"expects inputs of shape (batch, length, ...), got {describe([x])}"))

  def forward(self, x):
    if self.mode == "predict":
      return x
    pads = [(0, 0)] * x.ndim
    pads[1] = (self.n_positions, 0)
    return jnp.pad(x, pads)[:, : x.shape[1]]


def sinusoidal_encoding(positions: jax.Array, d_feature: int) -> jax.Array:
  """Transformer position encodings: `positions (L,) -> (L, d_feature)` float32.

  Even features are `sin(p / 10000^(2i/d))`, odd ones the matching `cos`.
  """
  frequencies = jnp.exp(jnp.arange(0, d_feature, 2, dtype=jnp.float32)
                        * -(np.log(10000.0) / d_feature))
  angles = positions.astype(jnp.float32)[:, None] * frequencies[None, :]
  interleaved = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return interleaved.reshape(positions.shape[0], -1)[:, :d_feature]


class PositionalEncoding(Layer):
  """Adds position encodings to `(batch, length, d_feature)` inputs: Trax's trained table.

  The table `weights` `(max_len, d)` is a trained parameter initialised with the Transformer
  sinusoids (even features `sin(p / 10000^(2i/d))`, odd ones `cos`), as in Trax; with
  `d_feature` set, a `(max_len, d_feature)` table is projected to the input depth by a learned
  `ff` matrix. `trainable=False` adds the fixed sinusoids instead and has no parameters
  (declax's earlier behaviour). In `'train'` mode with `dropout > 0` the encodings (not the
  inputs) are dropped out, the mask being shared along `dropout_broadcast_dims` (default: the
  length axis); with `start_from_zero_prob < 1` training positions start at a random offset
  below `max_offset_to_add` that often. In `'predict'` mode the current position lives in the
  `'cache'` collection (`position`, int32): each call adds the encodings of positions
  `position .. position + length - 1` and, when `'cache'` is mutable (and not during `init`),
  advances it by `length`. `use_bfloat16` stores the table in bfloat16.

  ```python
  enc = tl.PositionalEncoding(max_len=64, mode='predict')
  variables = enc.init(key, x[:, :1])                      # cache: {'position': 0}
  y, updates = enc.apply(variables, x[:, :1], mutable=['cache'])   # position -> 1
  tl.PositionalEncoding(max_len=64, trainable=False)      # fixed sinusoids, no parameters
  ```
  """

  max_len: int = 2048
  dropout: float = 0.0
  dropout_broadcast_dims: Sequence[int] = (-2,)
  use_bfloat16: bool = False
  start_from_zero_prob: float = 1.0
  max_offset_to_add: int = 0
  d_feature: int | None = None
  mode: str = "train"
  trainable: bool = True

  def __post_init__(self):
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"PositionalEncoding: dropout must be in [0, 1), got {self.dropout}")
    super().__post_init__()

  def _predict_start(self, length: int) -> jax.Array:
    """Where this call's positions begin in `'predict'` mode (advances the cache)."""
    is_initialized = self.has_variable("cache", "position")
    position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
    start = position.value
    if not isinstance(start, jax.core.Tracer) and int(start) + length > self.max_len:
      raise ValueError(f"decoding position {int(start)} + {length} exceeds max_len="
                       f"{self.max_len}")
    if is_initialized and self.is_mutable_collection("cache"):
      position.value = start + length
    return start

  def _table(self, d_model: int) -> jax.Array:
    d_table = self.d_feature or d_model
    if not self.trainable:
      return sinusoidal_encoding(jnp.arange(self.max_len), d_model)
    dtype = jnp.bfloat16 if self.use_bfloat16 else jnp.float32

    def init(key, shape, dtype):
      del key  # deterministic: Trax initialises the table with the sinusoids
      return sinusoidal_encoding(jnp.arange(shape[0]), shape[1]).astype(dtype)

    table = self.param("weights", param_init(init, (None, "embed")), (self.max_len, d_table),
                       dtype)
    if self.d_feature is not None:
      ff = self.param("ff", param_init(nn.initializers.glorot_uniform(), ("embed", None)),
                      (d_table, d_model))
      table = jnp.dot(table, ff)
    return table

  def contract(self, x):
    chex.assert_rank(x, 3, exception_type=ValueError,
                     custom_message="expects inputs of shape (batch, length, d_feature)")
    if self.mode != "predict":
      chex.assert_axis_dimension_lteq(x, 1, self.max_len, exception_type=ValueError,
                                      custom_message=(
          f"sequence length {x.shape[1]} ({describe([x])}) exceeds max_len={self.max_len}"))

  @nn.compact
  def forward(self, x):
    length = x.shape[1]
    table = self._table(x.shape[2]).astype(x.dtype)
    if self.mode == "predict":
      start = self._predict_start(length)
    else:
      start = 0
      if self.mode == "train" and self.start_from_zero_prob < 1.0:
        rng1, rng2 = jax.random.split(self.make_rng("dropout"))
        offset = jax.random.randint(rng1, (), 0, max(self.max_offset_to_add, 1))
        start = jnp.where(jax.random.uniform(rng2, ()) < self.start_from_zero_prob, 0, offset)
    encoding = jax.lax.dynamic_slice_in_dim(table, start, length, axis=0)[None]
    if self.mode == "train" and self.dropout > 0.0:
      shared = tuple(d % 3 for d in self.dropout_broadcast_dims) + (0,)
      encoding = apply_dropout(self, encoding, self.dropout, shared)
    return x + encoding
