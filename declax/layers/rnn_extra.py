"""More of Trax's recurrent layers: the parametrised `GeneralGRUCell`, `ConvGRUCell`, the
simple recurrent unit `SRU` and `MakeZeroState`.

```python
model = tl.Serial(tl.Embedding(100, 16), tl.SRU(16), tl.SRU(16))
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.activations import Sigmoid, Tanh
from declax.layers.base import Layer, describe
from declax.layers.combinators import (
  Branch,
  Dup,
  Fn,
  Gate,
  Multiply,
  Parallel,
  Serial,
  Split,
)
from declax.layers.convolution import Conv
from declax.layers.core import Dense, Dropout
from declax.layers.dtypes import at_least_float32, promote


class MakeZeroState(Layer):
  """`(batch, length, d) -> zeros (batch, depth_multiplier * d)` float32: an initial RNN state.

  ```python
  tl.MakeZeroState(depth_multiplier=2).apply({}, jnp.ones((8, 5, 3))).shape   # (8, 6)
  ```
  """

  depth_multiplier: int = 1

  def contract(self, x):
    chex.assert_rank(x, 3, exception_type=ValueError, custom_message=(
        "MakeZeroState expects a rank 3 input (batch_size, sequence_length, feature_depth), got "
        f"{describe([x])}"))

  def forward(self, x):
    return jnp.zeros((x.shape[0], self.depth_multiplier * x.shape[-1]), jnp.float32)


def _add_sigmoid_bias(sigmoid_bias: float) -> Layer:
  return Fn(f"AddSigmoidBias({sigmoid_bias})", lambda x: x + sigmoid_bias)


def GeneralGRUCell(candidate_transform: Callable[[], Layer],  # noqa: N802 (Trax's name)
                   memory_transform_fn: Callable[[], Layer] | None = None,
                   gate_nonlinearity: Callable[[], Layer] = Sigmoid,
                   candidate_nonlinearity: Callable[[], Layer] = Tanh,
                   dropout_rate_c: float = 0.1, sigmoid_bias: float = 0.5,
                   mode: str = "train") -> Layer:
  """A GRU cell on the state `s`, with the transform made by `candidate_transform()`:
  `u = gate(T'(s) + b)`, `r = gate(T''(s) + b)`, `c = cand(T(r * s))` (dropout on `c`),
  `s' = u * s + (1 - u) * c` (Trax's `GeneralGRUCell`; `mode` sets the dropout's mode).

  ```python
  cell = tl.GeneralGRUCell(lambda: tl.Dense(9))   # (batch, 9) -> (batch, 9)
  ```
  """
  gate_block = [candidate_transform(), _add_sigmoid_bias(sigmoid_bias), gate_nonlinearity()]
  reset_block = [candidate_transform(), _add_sigmoid_bias(sigmoid_bias), gate_nonlinearity()]
  candidate_block = [
      Dup(), reset_block, Multiply(),  # r * s
      candidate_transform(), candidate_nonlinearity(),
      Dropout(rate=dropout_rate_c, mode=mode),  # only on c: the paper's advice
  ]
  memory_transform = memory_transform_fn() if memory_transform_fn else []
  return Serial(Branch(memory_transform, gate_block, candidate_block), Gate())


def ConvGRUCell(n_units: int, kernel_size: tuple = (3, 3),  # noqa: N802 (Trax's name)
                mode: str = "train", dtype: Any = None) -> Layer:
  """A convolutional GRU cell (arXiv:1511.06432): `GeneralGRUCell` with `Conv(n_units,
  kernel_size, padding='SAME')` transforms, on `(batch, h, w, n_units)` states; `dtype` is the
  convolutions' compute dtype (declax's).

  ```python
  tl.ConvGRUCell(9, kernel_size=(3, 3))   # (8, 1, 7, 9) -> (8, 1, 7, 9)
  ```
  """
  return GeneralGRUCell(lambda: Conv(filters=n_units, kernel_size=kernel_size, padding="SAME",
                                     dtype=dtype), mode=mode)


class _SRURecurrence(Layer):
  """`(y * (1 - f), f) -> c` with `c_t = f_t c_{t-1} + y_t (1 - f_t)` and `c_0 = 0`: Trax's
  `Scan(InnerSRUCell)`, computed as a parallel associative scan over the length. In `'predict'`
  mode `c` of the last position, `(batch, n_units)` float32, is kept in the `'cache'` collection
  under `state` and the next call starts from it, so decoding token by token equals the full
  pass."""

  mode: str = "train"
  n_in = 2

  @property
  def default_label(self) -> str:
    return "InnerSRUCell"

  @nn.compact
  def forward(self, x_times_one_minus_f, f):
    # Trax's carry starts as float32 zeros, so the recurrence runs in (at least) float32.
    dtype = at_least_float32(x_times_one_minus_f)
    y, f = x_times_one_minus_f.astype(dtype), f.astype(dtype)
    decays, c = jax.lax.associative_scan(
        lambda a, b: (a[0] * b[0], b[0] * a[1] + b[1]), (f, y), axis=1)
    if self.mode != "predict":
      return c
    shape = (y.shape[0], y.shape[-1])
    is_initialized = self.has_variable("cache", "state")
    cached = self.variable("cache", "state", jnp.zeros, shape, jnp.float32)
    chex.assert_shape(cached.value, shape, exception_type=ValueError, custom_message=(
        f"SRU: the cached state has shape {cached.value.shape}, but this call needs {shape} "
        "(was the cache initialised for another batch size?)"))
    c = c + decays * cached.value[:, None, :].astype(dtype)
    if is_initialized:
      cached.value = c[:, -1].astype(jnp.float32)
    return c


def _final_sru_gate(c, r, x):
  # The output is in the gates' dtype (the compute dtype; the recurrence ran in float32); with
  # float32 gates a bfloat16 input promotes to float32 (Trax's standard promotion).
  c, r, x = promote(c.astype(r.dtype), r, x)
  return c * r + x * (1 - r) * (3**0.5)


class SRU(Layer):
  """Simple recurrent unit (arXiv:1709.02755) over `(batch, length, n_units)`:
  `y, f, r = Dense(3 n)(x)` split, `c_t = f_t c_{t-1} + (1 - f_t) y_t` (a `Scan` over the
  length), `h = r * activation(c) + (1 - r) * x * sqrt(3)`. Prints as `SRU_{n_units}`, without
  its sublayers, as in Trax. The input width must be `n_units`. In `'predict'` mode the last
  `c` is kept in the `'cache'` collection (apply with `mutable=['cache']`), so a sequence fed
  token by token gives the full pass's outputs.

  ```python
  layer = tl.SRU(7)
  layer.init(key, jnp.ones((8, 9, 7)))   # output (8, 9, 7)
  ```
  """

  n_units: int = 1
  activation: Layer | None = None
  mode: str = "train"
  dtype: Any = dataclasses.field(default=None, kw_only=True)  # compute dtype of the Dense
  body: Layer | None = dataclasses.field(default=None, kw_only=True)  # built from the above

  def __post_init__(self):
    if self.body is None:
      object.__setattr__(self, "body", Serial(                     # x
          Branch(Dense(3 * self.n_units, dtype=self.dtype), None),  # r_f_y, x
          Split(n_items=3),                                        # r, f, y, x
          Parallel(Sigmoid(), Sigmoid()),                          # r, f, y, x
          Fn("", lambda r, f, y: (y * (1.0 - f), f, r), n_out=3),  # y * (1 - f), f, r, x
          _SRURecurrence(mode=self.mode),                          # c, r, x
          self.activation if self.activation is not None else [],
          Fn("FinalSRUGate", _final_sru_gate),
      ))
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return f"SRU_{self.n_units}"

  @property
  def sublayers(self) -> tuple:
    return ()

  def forward(self, x):
    return self.call_child(self.body, [x])[0]


__all__ = ["ConvGRUCell", "GeneralGRUCell", "MakeZeroState", "SRU"]
