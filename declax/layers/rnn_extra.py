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
  Select,
  Serial,
  Split,
)
from declax.layers.control_flow import Scan
from declax.layers.convolution import Conv
from declax.layers.core import Dense, Dropout
from declax.layers.dtypes import promote


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


def _inner_sru_cell(x_times_one_minus_f, f, state):
  # The carry `c` is a running sum over the length: it stays in the zero state's float32 under
  # a bfloat16 policy (bfloat16 would drop small updates), the gates are cast up to it.
  new = f.astype(state.dtype) * state + x_times_one_minus_f.astype(state.dtype)
  return new, new


def _final_sru_gate(c, r, x):
  # The output is in the gates' dtype (the compute dtype); with float32 gates a bfloat16 input
  # promotes to float32 (Trax's standard promotion).
  c, r, x = promote(c.astype(r.dtype), r, x)
  return c * r + x * (1 - r) * (3**0.5)


class SRU(Layer):
  """Simple recurrent unit (arXiv:1709.02755) over `(batch, length, n_units)`:
  `y, f, r = Dense(3 n)(x)` split, `c_t = f_t c_{t-1} + (1 - f_t) y_t` (a `Scan` over the
  length), `h = r * activation(c) + (1 - r) * x * sqrt(3)`. Prints as `SRU_{n_units}`, without
  its sublayers, as in Trax. The input width must be `n_units`.

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
          Parallel(None, None, Branch(MakeZeroState(), None)),     # ..., zeros, r, x
          Scan(Fn("InnerSRUCell", _inner_sru_cell, n_out=2), axis=1, mode=self.mode),
          Select([0], n_in=2),                                     # c, r, x
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
