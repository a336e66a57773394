"""Recurrent layers: LSTM and GRU cells (one time step) and the layers that run them over time.

Cells and sequence layers share one parameter layout (so a cell's variables apply to the
sequence layer with the same `n_units`, and the other way around):

```
input_kernel      (d_input, n_gates * n_units)   ('embed', 'mlp')
recurrent_kernel  (n_units, n_gates * n_units)   ('embed', 'mlp')
bias              (n_gates * n_units,)           ('mlp',)
```

with gates in Trax's order: LSTM `i, j, f, o` (input gate, candidate, forget gate, output gate),
GRU `u, r, c` (update gate, reset gate, candidate). The sequence layers compute the input
projection of all time steps with one matmul and loop (`jax.lax.scan`) only over the recurrence.
With `dtype='bfloat16'` the matmuls run in bfloat16 and the outputs are bfloat16, while the
recurrent state (the carry) stays float32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer
from declax.layers.core import stored_param_shape
from declax.layers.dtypes import at_least_float32, promote_dtype
from declax.layers.partitioning import constrain, param_init

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell"]


def _kw(default: Any) -> Any:
  return dataclasses.field(default=default, kw_only=True)


def _recurrent_matmul(h: jax.Array, kernel: jax.Array, carry_dtype: Any) -> jax.Array:
  """`h @ kernel` in the kernel's (compute) dtype, accumulated and returned in `carry_dtype`."""
  return jnp.matmul(h.astype(kernel.dtype), kernel, preferred_element_type=carry_dtype)


def lstm_step(recurrent_kernel: jax.Array, state: jax.Array,
              x_proj: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One LSTM step. `state` is `concat([c, h], -1)`; `x_proj = x @ input_kernel + bias`.

  Returns `(new_state, new_h)`: the state in at least float32 (the carry), `new_h` in
  `x_proj`'s (compute) dtype. The matmul runs in the kernel's dtype.
  """
  carry_dtype = at_least_float32(state)
  c, h = jnp.split(state.astype(carry_dtype), 2, axis=-1)
  gates = x_proj.astype(carry_dtype) + _recurrent_matmul(h, recurrent_kernel, carry_dtype)
  i, j, f, o = jnp.split(gates, 4, axis=-1)
  new_c = c * jax.nn.sigmoid(f) + jax.nn.sigmoid(i) * jnp.tanh(j)
  new_h = jnp.tanh(new_c) * jax.nn.sigmoid(o)
  return jnp.concatenate([new_c, new_h], axis=-1), new_h.astype(x_proj.dtype)


def gru_step(recurrent_kernel: jax.Array, h: jax.Array,
             x_proj: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One GRU step (Trax's variant: the reset gate scales the state before its projection).

  `u, r = sigmoid(x W_x + h W_h + b)`, `c = tanh(x W_xc + (r * h) W_hc + b_c)`,
  `new_h = u * h + (1 - u) * c`. Returns `(new_h, new_h)`: the carry in at least float32, the
  output in `x_proj`'s (compute) dtype.
  """
  carry_dtype = at_least_float32(h)
  h, x_proj_c = h.astype(carry_dtype), x_proj.astype(carry_dtype)
  n = h.shape[-1]
  u, r = jnp.split(jax.nn.sigmoid(
      x_proj_c[..., : 2 * n] + _recurrent_matmul(h, recurrent_kernel[:, : 2 * n], carry_dtype)),
      2, axis=-1)
  candidate = jnp.tanh(x_proj_c[..., 2 * n :]
                       + _recurrent_matmul(r * h, recurrent_kernel[:, 2 * n :], carry_dtype))
  new_h = u * h + (1.0 - u) * candidate
  return new_h, new_h.astype(x_proj.dtype)


class _Recurrent(Layer):
  """Fields and parameters shared by the cells and the sequence layers."""

  n_units: int
  # Initial bias of the forget gate (LSTM, default 1.0) or the update gate (GRU, default 0.0).
  forget_bias: float | None = _kw(None)
  dtype: Any = _kw(None)
  param_dtype: Any = _kw(jnp.float32)
  kernel_initializer: Callable = _kw(nn.initializers.glorot_uniform())
  recurrent_kernel_initializer: Callable = _kw(nn.initializers.orthogonal())
  bias_initializer: Callable = _kw(nn.initializers.zeros)
  kernel_axes: tuple | None = _kw(("embed", "mlp"))
  recurrent_kernel_axes: tuple | None = _kw(("embed", "mlp"))
  bias_axes: tuple | None = _kw(("mlp",))

  _n_gates = 0
  _state_factor = 1
  _default_forget_bias = 0.0
  _forget_gate = 0  # index of the gate whose bias starts at forget_bias
  _step = None  # the pure step function, (recurrent_kernel, state, x_proj) -> (state, y)

  @property
  def state_size(self) -> int:
    return self._state_factor * self.n_units

  def _bias_init(self, key, shape, dtype):
    bias = self.bias_initializer(key, shape, dtype)
    forget_bias = self._default_forget_bias if self.forget_bias is None else self.forget_bias
    start = self._forget_gate * self.n_units
    return bias.at[start : start + self.n_units].add(jnp.asarray(forget_bias, dtype))

  def _check_width(self, x: jax.Array) -> None:
    """The input width against a stored kernel (part of the subclasses' contracts)."""
    stored = stored_param_shape(self, "input_kernel")
    if stored is not None:
      chex.assert_axis_dimension(x, -1, stored[0], exception_type=ValueError,
                                 custom_message=(
          f"input has {x.shape[-1]} features, but input_kernel has shape {stored} (built for "
          f"{stored[0]} features)"))

  def _params(self, d_input: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Creates (or fetches) the parameters."""
    width = self._n_gates * self.n_units
    input_kernel = self.param("input_kernel", param_init(self.kernel_initializer, self.kernel_axes),
                              (d_input, width), self.param_dtype)
    initializer = param_init(self.recurrent_kernel_initializer, self.recurrent_kernel_axes)
    recurrent_kernel = self.param("recurrent_kernel", initializer, (self.n_units, width),
                                  self.param_dtype)
    bias = self.param("bias", param_init(self._bias_init, self.bias_axes), (width,),
                      self.param_dtype)
    return input_kernel, recurrent_kernel, bias


class _Cell(_Recurrent):
  """One time step: `(x_t, state) -> (y_t, new_state)`."""

  n_in = 2
  n_out = 2

  def contract(self, x, state):
    chex.assert_shape(state, (*x.shape[:-1], self.state_size),
                      custom_message=f"state must be (batch, {self.state_size}) for "
                                     f"x_t of shape {x.shape}")
    self._check_width(x)

  @nn.compact
  def forward(self, x, state):
    input_kernel, recurrent_kernel, bias = self._params(x.shape[-1])
    x, input_kernel, recurrent_kernel, bias = promote_dtype(
        x, input_kernel, recurrent_kernel, bias, dtype=self.dtype)
    x_proj = x @ input_kernel + jax.lax.broadcast_to_rank(bias, x.ndim)
    new_state, y = type(self)._step(recurrent_kernel, state, x_proj)
    # The state comes back in its own dtype, so a loop over the cell keeps one carry dtype.
    return y, new_state.astype(state.dtype)


class _Sequence(_Recurrent):
  """Runs a cell over axis 1 of `(batch, time, features)` from a zero state."""

  mode: str = "train"
  unroll: int = _kw(1)
  activation_axes: tuple | None = _kw(("batch", "length", "embed"))

  @property
  def default_label(self) -> str:
    return f"{type(self).__name__}_{self.n_units}"

  def contract(self, x):
    chex.assert_rank(x, 3, custom_message="input must be (batch, time, features)")
    self._check_width(x)

  @nn.compact
  def forward(self, x):
    input_kernel, recurrent_kernel, bias = self._params(x.shape[-1])
    x, input_kernel, recurrent_kernel, bias = promote_dtype(
        x, input_kernel, recurrent_kernel, bias, dtype=self.dtype)
    x_proj = jnp.einsum("btd,dg->btg", x, input_kernel) + bias[None, None]
    shape = (x.shape[0], self.state_size)
    # The carry stays in float32 under a bfloat16 policy: the LSTM's cell state is a running
    # sum over time, and bfloat16's 8-bit mantissa would drop its small per-step updates
    # (1 + 2**-9 == 1). The matmuls still run in the compute dtype.
    carry_dtype = at_least_float32(x_proj)
    if self.mode == "predict":
      is_initialized = self.has_variable("cache", "state")
      cached = self.variable("cache", "state", jnp.zeros, shape, carry_dtype)
      chex.assert_shape(cached.value, shape, exception_type=ValueError, custom_message=(
          f"the cached state has shape {cached.value.shape}, but this call needs {shape} (was "
          "the model initialized with another batch size?)"))
      state = cached.value.astype(carry_dtype)
    else:
      state = jnp.zeros(shape, carry_dtype)
    step = functools.partial(type(self)._step, recurrent_kernel)
    final, ys = jax.lax.scan(step, state, jnp.swapaxes(x_proj, 0, 1), unroll=self.unroll)
    if self.mode == "predict" and is_initialized:
      cached.value = final
    return constrain(jnp.swapaxes(ys, 0, 1), self.activation_axes)


class LSTMCell(_Cell):
  """One LSTM step: `(x_t, state) -> (h_t, new_state)`, Trax's `LSTMCell`.

  The state packs the cell and the hidden state, `concat([c, h], -1)` of shape
  `(batch, 2 * n_units)`; start from zeros.

  **Arguments:** `n_units`. Keyword-only: `forget_bias` (initial forget-gate bias, 1.0),
  `dtype`/`param_dtype`, initializers and axis names.

  **Inputs:** `x_t (batch, d_input)`, `state (batch, 2 * n_units)`.
  **Returns:** `h_t (batch, n_units)`, `new_state (batch, 2 * n_units)`.

  ```python
  cell = tl.LSTMCell(16)
  h, state = cell.apply(variables, (x_t, jnp.zeros((batch, 32))))
  ```
  """

  _n_gates = 4
  _state_factor = 2
  _default_forget_bias = 1.0
  _forget_gate = 2
  _step = staticmethod(lstm_step)


class GRUCell(_Cell):
  """One GRU step: `(x_t, state) -> (h_t, h_t)`, Trax's `GRUCell`; the state is `(batch, n_units)`.

  **Arguments:** `n_units`. Keyword-only: `forget_bias` (initial update-gate bias, 0.0),
  `dtype`/`param_dtype`, initializers and axis names.

  ```python
  cell = tl.GRUCell(16)
  h, state = cell.apply(variables, (x_t, jnp.zeros((batch, 16))))
  ```
  """

  _n_gates = 3
  _step = staticmethod(gru_step)


class LSTM(_Sequence):
  """An LSTM over time: `(batch, time, d_input) -> (batch, time, n_units)`, from a zero state.

  In `'predict'` mode the state `(batch, 2 * n_units)` lives in the `'cache'` collection under
  `state` (zeros after init; the batch size comes from the init input, its length does not
  matter) and every `apply(..., mutable=['cache'])` continues from it, so feeding a sequence in
  pieces gives the same outputs as one pass.

  **Arguments:** `n_units`, `mode`. Keyword-only: as `LSTMCell`, plus `unroll` (of the time
  loop).

  ```python
  rnn = tl.LSTM(32)                                 # prints as LSTM_32
  y = rnn.apply(rnn.init(rng, x), x)                # x (batch, time, d) -> y (batch, time, 32)
  ```
  """

  _n_gates = LSTMCell._n_gates
  _state_factor = LSTMCell._state_factor
  _default_forget_bias = LSTMCell._default_forget_bias
  _forget_gate = LSTMCell._forget_gate
  _step = staticmethod(lstm_step)


class GRU(_Sequence):
  """A GRU over time: `(batch, time, d_input) -> (batch, time, n_units)`, from a zero state.

  In `'predict'` mode the state `(batch, n_units)` is kept in the `'cache'` collection under
  `state`, as for `LSTM`.

  ```python
  rnn = tl.GRU(32)                                  # prints as GRU_32
  ```
  """

  _n_gates = GRUCell._n_gates
  _step = staticmethod(gru_step)
