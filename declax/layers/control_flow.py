"""Combinators that loop or branch: `Scan`, `ScanLayers`, `Cond`, `Chunk`, `BatchLeadingAxes`,
`Bidirectional`.

They lower to `jax.lax.scan` / `jax.lax.cond` through Linen's lifted transforms, so parameters
are shared across loop steps and everything compiles to one XLA loop or branch.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer
from declax.layers.combinators import Concatenate
from declax.layers.stack import describe


def _scan_layer(parent: Layer, carry: tuple, xs: tuple, axis: int,
                remat: bool) -> tuple[tuple, tuple]:
  """Runs `parent.layer` on `(*x_t, *carry)` for every slice `x_t` of `xs` along `axis`.

  Returns `(final_carry, stacked_ys)`; parameters are shared by all steps, dropout keys differ.
  """
  n_ys = parent.layer.n_out - len(carry)

  def body(mdl: Layer, carry, xs):
    # Reach the sublayer through `mdl`, the lifted copy of `parent`: the outer one would leak.
    outputs = mdl.call_child(mdl.layer, tuple(xs) + tuple(carry))
    return tuple(outputs[n_ys:]), tuple(outputs[:n_ys])

  if remat:
    body = nn.checkpoint(body, prevent_cse=False)
  scan = nn.scan(body, variable_broadcast="params", variable_carry="batch_stats",
                 split_rngs={"params": False, "dropout": True}, in_axes=axis, out_axes=axis)
  return scan(parent, tuple(carry), tuple(xs))


class SameArityAsLayer(Layer):
  """Base of combinators that wrap one sublayer, `self.layer`, and keep its stack arity."""

  @property
  def n_in(self) -> int:
    return self.layer.n_in

  @property
  def n_out(self) -> int:
    return self.layer.n_out


class Scan(SameArityAsLayer):
  """Applies `layer` cumulatively along `axis`, threading `n_carry` carry items through.

  `layer` takes `(x_1..x_k, carry_1..carry_n)` and returns `(y_1..y_m, new_carry_1..new_carry_n)`.
  `Scan(layer)` takes `(xs_1..xs_k, carry_1..carry_n)` where each `xs_i` has the scanned `axis`,
  and returns `(ys_1..ys_m, final_carry_1..final_carry_n)` with the `ys` stacked along `axis`.
  `remat=True` recomputes each step's activations in the backward pass (saves memory). In
  `mode='predict'` the carry is kept in the `cache` collection between calls, so a sequence can
  be fed piece by piece.

  ```python
  cumsum = tl.Scan(tl.Fn('Step', lambda x, c: (x + c, x + c), n_out=2), axis=0)
  cumsum((jnp.arange(1., 5.), jnp.zeros(())))   # ([1., 3., 6., 10.], 10.)
  ```
  """

  layer: Layer
  axis: int = 0
  n_carry: int = 1
  remat: bool = False
  mode: str = "train"

  def __post_init__(self):
    if self.layer.n_in <= self.n_carry:
      raise ValueError(f"Scan: {self.layer.header} must take at least one scanned input beyond "
                       f"its n_carry={self.n_carry} carries")
    if self.layer.n_out < self.n_carry:
      raise ValueError(f"Scan: {self.layer.header} returns fewer than n_carry={self.n_carry} "
                       "outputs")
    super().__post_init__()

  @nn.compact
  def forward(self, *items):
    n_xs = self.layer.n_in - self.n_carry
    xs, carry = items[:n_xs], items[n_xs:]
    cached, is_initialized = None, False
    if self.mode == "predict" and self.n_carry:
      is_initialized = self.has_variable("cache", "carry")
      cached = self.variable("cache", "carry", lambda: tuple(carry))
      carry = cached.value
    new_carry, ys = _scan_layer(self, carry, xs, self.axis, self.remat)
    if is_initialized:
      cached.value = new_carry
    return (*ys, *new_carry)


class Chunk(SameArityAsLayer):
  """Runs `layer` on the batch in chunks of `chunk_size` rows, one after another, to save memory.

  Each chunk's activations are recomputed in the backward pass. A batch that `chunk_size` does
  not divide is run whole when `pass_unchunkable` (else it is an error). `chunk_size=0` runs
  the layer on the whole batch.

  ```python
  tl.Chunk(tl.Dense(512), chunk_size=64)     # same result as Dense(512), a quarter of the memory
  ```
  """

  layer: Layer
  chunk_size: int = 0
  pass_unchunkable: bool = True

  def forward(self, *items):
    if self.chunk_size == 0:
      return self.call_child(self.layer, items)
    batch = items[0].shape[0]
    size = self.chunk_size
    if batch % size:
      if not self.pass_unchunkable:
        raise ValueError(f"chunk_size {size} does not divide the batch size {batch}")
      size = batch
    chunked = tuple(x.reshape((batch // size, size) + x.shape[1:]) for x in items)
    _, ys = _scan_layer(self, (), chunked, 0, remat=True)
    return tuple(y.reshape((-1,) + y.shape[2:]) for y in ys)


class Cond(Layer):
  """Runs `true` or `false` on the stack depending on the boolean scalar that `cond` returns.

  `cond` consumes its `n_in` items first; the chosen branch then takes the next items. Both
  branches must have the same arity; `false=None` is the identity (so `true` must be n-to-n).
  Both branches' parameters exist whichever branch runs (`jax.lax.cond` traces both).

  ```python
  tl.Cond(tl.Fn('Positive', lambda x: jnp.sum(x) > 0), tl.Fn('Double', lambda x: 2 * x))
  ```
  """

  cond: Layer
  true: Layer
  false: Layer | None = None

  def __post_init__(self):
    if self.cond.n_out != 1:
      raise ValueError(f"Cond: the condition {self.cond.header} must return one item, "
                       f"returns {self.cond.n_out}")
    false_arity = ((self.true.n_in, self.true.n_in) if self.false is None
                   else (self.false.n_in, self.false.n_out))
    if (self.true.n_in, self.true.n_out) != false_arity:
      what = "the identity (false=None)" if self.false is None else self.false.header
      raise ValueError(f"Cond: branches differ in arity: true {self.true.header} is "
                       f"{self.true.n_in}->{self.true.n_out}, false {what} is "
                       f"{false_arity[0]}->{false_arity[1]}")
    super().__post_init__()

  @property
  def n_in(self) -> int:
    return self.cond.n_in + self.true.n_in

  @property
  def n_out(self) -> int:
    return self.true.n_out

  def _branch(self, layer: Layer | None, operands: tuple) -> tuple:
    return tuple(operands) if layer is None else self.call_child(layer, operands)

  def forward(self, *items):
    (pred,) = self.call_child(self.cond, items[: self.cond.n_in])
    pred = jnp.asarray(pred)
    message = (f"Cond: the condition {self.cond.header} must return a boolean scalar, got "
               f"{pred.dtype}{list(pred.shape)}")
    chex.assert_shape(pred, (), exception_type=TypeError, custom_message=message)
    chex.assert_type(pred, bool, exception_type=TypeError, custom_message=message)
    operands = items[self.cond.n_in :]
    if self.is_initializing():  # create both branches' variables, outside lax.cond
      on_true, on_false = self._branch(self.true, operands), self._branch(self.false, operands)
      return jax.tree.map(lambda t, f: jnp.where(pred, t, f), on_true, on_false)
    return nn.cond(pred, lambda mdl, *ops: mdl._branch(mdl.true, ops),
                   lambda mdl, *ops: mdl._branch(mdl.false, ops), self, *operands)


class BatchLeadingAxes(SameArityAsLayer):
  """Applies `layer` to inputs with any number of leading axes by folding them into one batch.

  All but the last `n_last_axes_to_keep` axes of each input are merged into one batch axis for
  `layer`, and restored on its outputs.

  ```python
  tl.BatchLeadingAxes(tl.Dense(3))(jnp.ones((2, 5, 7, 4)))   # shape (2, 5, 7, 3)
  ```
  """

  layer: Layer
  n_last_axes_to_keep: int = 1

  def contract(self, *items):
    message = f"BatchLeadingAxes: inputs differ in leading axes: {describe(items)}"
    chex.assert_equal_rank(items, exception_type=ValueError, custom_message=message)
    chex.assert_equal_shape_prefix(items, items[0].ndim - self.n_last_axes_to_keep,
                                   exception_type=ValueError, custom_message=message)

  def forward(self, *items):
    keep = self.n_last_axes_to_keep
    leading = items[0].shape[: items[0].ndim - keep]
    flat = tuple(x.reshape((math.prod(leading),) + x.shape[x.ndim - keep :]) for x in items)
    outputs = self.call_child(self.layer, flat)
    return tuple(y.reshape(leading + y.shape[1:]) for y in outputs)


class Bidirectional(Layer):
  """Runs `forward_layer` along `axis` and a copy of it (own parameters) on the reversed
  sequence, then merges the two results (concatenated on the last axis by default).

  ```python
  tl.Bidirectional(tl.LSTM(32))     # (batch, time, d) -> (batch, time, 64)
  ```
  """

  forward_layer: Layer
  axis: int = 1
  merge_layer: Layer = dataclasses.field(default_factory=Concatenate)

  @property
  def n_in(self) -> int:
    return self.forward_layer.n_in

  @property
  def n_out(self) -> int:
    return self.merge_layer.n_out

  @nn.compact
  def forward(self, *items):
    backward_layer = self.forward_layer.copy(name="backward_layer")
    ahead = self.call_child(self.forward_layer, items)
    flipped = tuple(jnp.flip(x, axis=self.axis) for x in items)
    behind = tuple(jnp.flip(y, axis=self.axis) for y in self.call_child(backward_layer, flipped))
    return self.call_child(self.merge_layer, ahead + behind)


class ScanLayers(SameArityAsLayer):
  """`n_layers` copies of `layer` applied one after another, compiled as one `jax.lax.scan`.

  Same function as `Serial(layer_1, ..., layer_n)` with independent parameters, but the layer
  is traced once, so compile time stays flat in `n_layers`. Every variable of `layer` gets a
  leading axis of size `n_layers` (logical name `'layers'`): parameters, and in `'predict'`
  mode the decoding caches. `layer` must keep the stack's size (`n_in == n_out`); all its
  inputs are carried from one layer to the next. Dropout keys differ per layer.

  ```python
  blocks = ScanLayers(DecoderBlock(...), n_layers=6)   # prints as ScanLayers_6[ DecoderBlock[..] ]
  ```
  """

  layer: Layer
  n_layers: int = 1

  def __post_init__(self):
    if self.layer.n_in != self.layer.n_out:
      raise ValueError(f"ScanLayers: {self.layer.header} must have n_in == n_out to be "
                       f"repeated, has {self.layer.n_in} -> {self.layer.n_out}")
    if self.n_layers < 1:
      raise ValueError(f"ScanLayers: n_layers must be >= 1, got {self.n_layers}")
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return f"ScanLayers_{self.n_layers}"

  def forward(self, *items):
    def body(mdl: ScanLayers, carry: tuple):
      return tuple(mdl.call_child(mdl.layer, carry)), None

    scan = nn.scan(
        body,
        variable_axes={"params": 0, "cache": 0, "batch_stats": 0, "intermediates": 0},
        split_rngs={"params": True, "dropout": True},
        length=self.n_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    carry, _ = scan(self, tuple(items))
    return carry
