"""Combinators that compose layers over the data stack, with Trax's semantics and argument names.

All of them move items with the helpers of `declax.layers.stack` (`run_serial`,
`inputs_from_stack`, `outputs_onto_stack`, `stack_arity`). Parameter-free stack operations are
`Fn` one-liners, as in Trax. Loops and branches over time or data (`Scan`, `Cond`, `Chunk`,
`BatchLeadingAxes`, `Bidirectional`, `ScanLayers`) live in `declax.layers.control_flow`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax.numpy as jnp

from declax.layers.base import Layer
from declax.layers.dtypes import promote
from declax.layers.linen import as_layer
from declax.layers.stack import (
  SerialArity,
  flatten_layers,
  inputs_from_stack,
  outputs_onto_stack,
  run_serial,
  stack_arity,
)


def _as_layer(item: Any) -> Layer:
  """`None`/`[]` is the identity, a list or tuple is a `Serial`, a plain Linen module is a
  `Linen` layer, a layer is itself."""
  if item is None or isinstance(item, (list, tuple)):
    return Serial(item)
  return as_layer(item)


def _flatten(items: list) -> list:
  """Nested lists flattened, `None` dropped, plain Linen modules wrapped as `Linen` layers."""
  return [as_layer(x) for x in flatten_layers(items)]


def positional_layers(convert: Callable[[list], list] = _flatten) -> Callable[[type], type]:
  """Class decorator: `Cls(a, b, [c], **fields)` fills the `layers` field with `convert([a, b,
  [c]])` (by default nested lists flattened, Linen modules wrapped). Linen's `clone()` passes
  `layers=` back by keyword, which is converted the same way. Subclasses repeat the decorator
  (Linen regenerates `__init__` for each dataclass).
  """
  def decorate(cls: type) -> type:
    dataclass_init = cls.__init__

    def __init__(self, *layers, **fields):
      layers = tuple(convert([*layers, *fields.pop("layers", ())]))
      dataclass_init(self, layers=layers, **fields)

    __init__.__doc__ = cls.__doc__
    cls.__init__ = __init__
    return cls

  return decorate


@positional_layers()
class Serial(SerialArity, Layer):
  """Runs layers one after another; each pops its `n_in` items and pushes its `n_out` items.

  `n_in`/`n_out` come from the running arithmetic over the sublayers. Nested lists of layers are
  flattened and `Serial()` is the identity. Called at the top level with more items than it
  needs, `Serial` passes the extra items through under its outputs (so `Serial(model, loss)`
  can consume a whole `(inputs, targets, weights)` batch).

  ```python
  model = tl.Serial(tl.Dense(8), tl.Relu(), tl.Dense(2))
  tl.Serial(tl.Dup(), tl.Dup()).n_out   # 3
  ```
  """

  layers: tuple = ()
  passes_extra_items = True  # at the top level: `Serial(model, loss)` takes a whole batch

  def forward(self, *items):
    return run_serial(self, self.layers, items)


class _SideBySide(Layer):
  """Sublayers whose outputs are concatenated on the stack (`Parallel`, `Branch`)."""

  layers: tuple = ()

  @property
  def n_out(self) -> int:
    return sum(layer.n_out for layer in self.layers)


@positional_layers(lambda items: [_as_layer(x) for x in items])
class Parallel(_SideBySide):
  """Applies layers to consecutive spans of the stack and concatenates their outputs.

  Layer `i` takes the next `layers[i].n_in` items. `None`/`[]` is an identity branch and a list
  is a `Serial`.

  ```python
  tl.Parallel(tl.Dense(3), None)((x, y))   # (Dense(x), y)
  ```
  """

  def __post_init__(self):
    if len(self.layers) < 2:
      raise ValueError(f"Parallel needs at least two sublayers, got {len(self.layers)}")
    for i, layer in enumerate(self.layers):
      if layer.n_in == 0:
        raise ValueError(f"Parallel: sublayer {i} ({layer.header}) has n_in == 0")
    super().__post_init__()

  @property
  def n_in(self) -> int:
    return sum(layer.n_in for layer in self.layers)

  def forward(self, *items):
    outputs, stack = (), items
    for layer in self.layers:
      outputs += self.call_child(layer, inputs_from_stack(stack, layer.n_in))
      stack = outputs_onto_stack((), stack, layer.n_in)
    return outputs


@positional_layers(lambda items: [_as_layer(x) for x in items])
class Branch(_SideBySide):
  """Runs each layer on copies of the top of the stack and concatenates their outputs.

  `n_in` is the largest of the branches' `n_in`; `n_out` is the sum of their `n_out`.

  ```python
  tl.Branch(tl.Add(), tl.Fn('Div', lambda x0, x1: x0 / 5))   # on ([1,2,3], [10,20,30]):
                                                             # ([11,22,33], [0.2,0.4,0.6])
  ```
  """

  def __post_init__(self):
    if not self.layers:
      raise ValueError("Branch needs at least one sublayer")
    super().__post_init__()

  @property
  def n_in(self) -> int:
    return max(layer.n_in for layer in self.layers)

  def forward(self, *items):
    return sum((self.call_child(layer, inputs_from_stack(items, layer.n_in))
                for layer in self.layers), ())


class Select(Layer):
  """Copies, reorders or drops stack items: output `i` is input `indices[i]`.

  `n_in` defaults to `max(indices) + 1`.

  ```python
  tl.Select([0, 1, 1])((a, b))   # (a, b, b)
  ```
  """

  indices: Sequence[int] = ()
  n_in: int | None = None

  def __post_init__(self):
    object.__setattr__(self, "indices", tuple(self.indices))
    if self.n_in is None:
      object.__setattr__(self, "n_in", max(self.indices) + 1 if self.indices else 0)
    elif self.indices and max(self.indices) >= self.n_in:
      raise ValueError(f"Select: index {max(self.indices)} is out of range for n_in={self.n_in}")
    super().__post_init__()

  @property
  def n_out(self) -> int:
    return len(self.indices)

  @property
  def default_label(self) -> str:
    return f"Select[{','.join(str(i) for i in self.indices)}]"

  def forward(self, *items):
    return tuple(items[i] for i in self.indices)


@positional_layers()
class Residual(Layer):
  """Adds a shortcut around layers: `shortcut(x) + layers(x)`, the shortcut being the identity.

  Extra outputs of the layers (beyond the first) stay on the stack under the sum.

  ```python
  tl.Residual(tl.LayerNorm(), tl.Dense(16), tl.Relu())
  ```
  """

  layers: tuple = ()
  shortcut: Layer | None = None

  def __post_init__(self):
    if not self.layers:
      raise ValueError("Residual needs at least one sublayer")
    super().__post_init__()

  def _arity(self) -> tuple[tuple[int, int], tuple[int, int]]:
    """`(n_in, n_out)` of the main path and of the shortcut."""
    short = (1, 1) if self.shortcut is None else (self.shortcut.n_in, self.shortcut.n_out)
    return stack_arity(self.layers), short

  @property
  def n_in(self) -> int:
    (main_in, _), (short_in, _) = self._arity()
    return max(main_in, short_in)

  @property
  def n_out(self) -> int:
    (_, main_out), (_, short_out) = self._arity()
    return short_out + main_out - 1

  def forward(self, *items):
    main = run_serial(self, self.layers, items)[: self._arity()[0][1]]
    short = (items[0],) if self.shortcut is None else self.call_child(
        self.shortcut, inputs_from_stack(items, self.shortcut.n_in))
    stacked = short + main
    return (jnp.add(*promote(stacked[0], stacked[1])), *stacked[2:])


class SerialWithSideOutputs(Layer):
  """Like `Serial`, but the last `n_side_outputs` outputs of each layer go to the stack's bottom.

  With 1-in/2-out layers: `x, s1 = l1(x); x, s2 = l2(x)` returns `(x, s1, s2)`.

  ```python
  tl.SerialWithSideOutputs([tl.Dup(), tl.Dup()])   # x -> (x, x, x)
  ```
  """

  layers: Sequence[Layer] = ()
  n_side_outputs: int = 1

  def __post_init__(self):
    object.__setattr__(self, "layers", tuple(self.layers))
    size = self.n_in
    for i, layer in enumerate(self.layers):
      if layer.n_out < self.n_side_outputs:
        raise ValueError(f"SerialWithSideOutputs: layer {i} ({layer.header}) has fewer than "
                         f"n_side_outputs={self.n_side_outputs} outputs")
      if layer.n_in > size:
        raise ValueError(f"SerialWithSideOutputs: layer {i} ({layer.header}) needs "
                         f"{layer.n_in} inputs, but only {size} are on the stack")
      size += layer.n_out - layer.n_in
    super().__post_init__()

  @property
  def n_in(self) -> int:
    return stack_arity(self.layers, self.n_side_outputs)[0]

  @property
  def n_out(self) -> int:
    return stack_arity(self.layers, self.n_side_outputs)[1]

  def forward(self, *items):
    return run_serial(self, self.layers, items, n_side_outputs=self.n_side_outputs)


# ---- Stack manipulation and arithmetic -----------------------------------------------------------


class Fn(Layer):
  """A layer from a pure function; `n_in` is the number of the function's positional arguments.

  Functions with defaults, `*args` or `**kwargs` are refused: their arity would be ambiguous.

  ```python
  tl.Fn('Halve', lambda x: x / 2)
  tl.Fn('SumAndDiff', lambda a, b: (a + b, a - b), n_out=2)
  ```
  """

  fn_name: str = "Fn"  # Trax's `name` (Linen's `name=` stays the module name)
  f: Callable | None = None
  n_out: int = 1

  def __post_init__(self):
    if not callable(self.f):
      raise ValueError(f"Fn {self.fn_name!r}: f must be callable, got {type(self.f).__name__}")
    for parameter in inspect.signature(self.f).parameters.values():
      if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        raise ValueError(f"Fn {self.fn_name!r}: f may not take *args or **kwargs "
                         f"({parameter}); give every input its own positional argument")
      if parameter.default is not parameter.empty:
        raise ValueError(f"Fn {self.fn_name!r}: argument {parameter.name!r} has a default value; "
                         "use functools.partial or a closure to fix it instead")
      if parameter.kind is parameter.KEYWORD_ONLY:
        raise ValueError(f"Fn {self.fn_name!r}: keyword-only argument {parameter.name!r}")
    super().__post_init__()

  @property
  def n_in(self) -> int:
    return len(inspect.signature(self.f).parameters)

  @property
  def default_label(self) -> str:
    return self.fn_name

  def forward(self, *items):
    return self.f(*items)


def Dup(**kwargs) -> Fn:
  """Duplicates the top item: `x -> (x, x)`."""
  return Fn("Dup", lambda x: (x, x), n_out=2, **kwargs)


def Swap(**kwargs) -> Fn:
  """Swaps the top two items."""
  return Fn("Swap", lambda x0, x1: (x1, x0), n_out=2, **kwargs)


def Drop(**kwargs) -> Fn:
  """Removes the top item."""
  return Fn("Drop", lambda x: (), n_out=0, **kwargs)


def Add(**kwargs) -> Fn:
  """Adds the top two items: `x0 + x1`."""
  return Fn("Add", lambda x0, x1: jnp.add(*promote(x0, x1)), **kwargs)


def SubtractTop(**kwargs) -> Fn:
  """Subtracts the top item from the second: `x1 - x0`."""
  return Fn("SubtractTop", lambda x0, x1: jnp.subtract(*promote(x1, x0)), **kwargs)


def Multiply(**kwargs) -> Fn:
  """Multiplies the top two items."""
  return Fn("Multiply", lambda x0, x1: jnp.multiply(*promote(x0, x1)), **kwargs)


def Gate(**kwargs) -> Fn:
  """Gated mix of `(memory, gate, candidate)`: `gate * memory + (1 - gate) * candidate`."""

  def gate(m, g, c):
    m, g, c = promote(m, g, c)
    return g * m + (1.0 - g) * c

  return Fn("Gate", gate, **kwargs)


class Concatenate(Layer):
  """Concatenates the top `n_items` items along `axis`.

  ```python
  tl.Concatenate()((jnp.ones((2, 3)), jnp.ones((2, 4))))   # shape (2, 7)
  ```
  """

  n_items: int = 2
  axis: int = -1

  @property
  def n_in(self) -> int:
    return self.n_items

  @property
  def default_label(self) -> str:
    return "Concatenate" if self.axis == -1 else f"Concatenate_axis{self.axis}"

  def forward(self, *items):
    return jnp.concatenate(items, axis=self.axis)


class Split(Layer):
  """Splits the top item into `n_items` equal parts along `axis`.

  ```python
  tl.Split()(jnp.ones((2, 8)))   # two arrays of shape (2, 4)
  ```
  """

  n_items: int = 2
  axis: int = -1

  @property
  def n_out(self) -> int:
    return self.n_items

  def contract(self, x):
    chex.assert_is_divisible(x.shape[self.axis], self.n_items, exception_type=ValueError,
                             custom_message=f"cannot split axis {self.axis} of size "
                             f"{x.shape[self.axis]} into {self.n_items} equal parts")

  def forward(self, x):
    return tuple(jnp.split(x, self.n_items, axis=self.axis))
