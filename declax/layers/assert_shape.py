"""Shape assertions in Trax's `'...d->...d'` language: `AssertShape`, `AssertFunction` and the
`assert_shape` decorator.

A specification lists one shape per stack item, separated by commas: a letter or digit per
axis, and at most one `...` per shape standing for any number of axes. The same letter means
the same size everywhere in the specification; a digit is that size; all `...` must cover the
same axes. `AssertFunction('in->out', layer)` checks both sides of `layer` with one set of
letters. Checks run when the model is traced (shapes are static), with chex.

```python
layer = tl.AssertFunction('...d->...d', tl.Dense(4))   # fails: Dense changes the width
tl.AssertShape('bld,bd')                               # the identity, checking two items
```
"""

from __future__ import annotations

import inspect
import string
from typing import Any

import chex
import flax.linen as nn

from declax.errors import DeclaxError
from declax.layers.base import Layer, unpack
from declax.layers.control_flow import SameArityAsLayer

_ALLOWED = set(string.ascii_letters + string.digits + ".,")


class ShapeAssertionError(DeclaxError, ValueError):
  """A stack item does not have the shape its `AssertShape` specification says."""


def _parse(spec: str) -> list[str]:
  """`'a...b,c'` -> `['a.b', 'c']`, refusing malformed specifications."""
  bad = set(spec) - _ALLOWED - {"."}
  if bad:
    raise ShapeAssertionError(f"shape specification {spec!r} has characters {sorted(bad)}; use "
                              "letters, digits, '...' and ','")
  shapes = spec.replace("...", "\0").split(",")
  for shape in shapes:
    if "." in shape or shape.count("\0") > 1:
      raise ShapeAssertionError(f"shape specification {spec!r}: each shape may contain one "
                                "'...' (three dots) and no other dots")
  return [s.replace("\0", ".") for s in shapes]


class _Bindings:
  """Sizes bound to letters (and to `...`) while checking one specification."""

  def __init__(self, spec: str, message: str):
    self.sizes: dict[str, Any] = {}
    self.spec, self.message = spec, message

  def fail(self, items, why: str) -> None:
    shapes = [tuple(getattr(x, "shape", ())) for x in items]
    letters = {k: v for k, v in self.sizes.items() if k != "."}
    raise ShapeAssertionError(f"expected shapes {self.spec!r}, got {shapes} ({why}; bound "
                              f"{letters}){self.message}")

  def bind(self, key: str, value: Any, items) -> None:
    if key.isdigit():
      if value != int(key):
        self.fail(items, f"an axis of size {value} where the specification says {key}")
    elif key in self.sizes and self.sizes[key] != value:
      what = "'...'" if key == "." else f"'{key}'"
      self.fail(items, f"{what} is {value} here but {self.sizes[key]} before")
    else:
      self.sizes[key] = value

  def check(self, items: tuple, shapes: list[str]) -> None:
    if len(items) != len(shapes):
      self.fail(items, f"{len(items)} item(s) for {len(shapes)} shape(s)")
    for x, shape in zip(items, shapes, strict=True):
      dims = tuple(x.shape)
      if "." in shape:
        before, after = shape.split(".")
        if len(dims) < len(before) + len(after):
          self.fail(items, f"rank {len(dims)} is below the {len(before) + len(after)} named axes "
                    f"of {shape.replace('.', '...')!r}")
        middle = dims[len(before) : len(dims) - len(after)]
        named = list(zip(before, dims[: len(before)], strict=True))
        named += list(zip(after, dims[len(dims) - len(after) :], strict=True))
        self.bind(".", middle, items)
      else:
        if len(dims) != len(shape):
          self.fail(items, f"rank {len(dims)} where {shape!r} has {len(shape)} axes")
        named = list(zip(shape, dims, strict=True))
      for letter, size in named:
        self.bind(letter, size, items)
      expected = tuple(self.sizes[k] if k in self.sizes else int(k) if k.isdigit() else None
                       for k in shape.replace(".", ""))
      if "." not in shape:
        chex.assert_shape(x, expected)


def _call_site() -> str:
  """Where `assert_shape(...)` was written (the frame that called it)."""
  frame = inspect.stack()[2]
  return f"defined at {frame.filename}:{frame.lineno}"


def _suffix(message: str | None) -> str:
  # The LayerError around the failure already says where the layer was created.
  return f" ({message})" if message else ""


class AssertShape(Layer):
  """The identity on the stack items described by `spec` (e.g. `'bld,bd'`), checking them.

  `n_in == n_out ==` the number of comma-separated shapes. `message` is added to failures.
  Unlike Trax, it prints as `AssertShape` even without `visible_layer=True` (errors name it).

  ```python
  tl.AssertShape('aa').apply({}, jnp.ones((3, 3)))   # passes; (3, 4) raises
  ```
  """

  spec: str = ""
  message: str | None = None
  visible_layer: bool = False

  @property
  def n_in(self) -> int:
    return len(self.spec.replace("...", ".").split(","))

  @property
  def n_out(self) -> int:
    return self.n_in

  @property
  def default_label(self) -> str:
    return "AssertShape"  # also when not visible_layer: errors name it

  def forward(self, *xs):
    _Bindings(self.spec, _suffix(self.message)).check(xs, _parse(self.spec))
    return xs


class AssertFunction(SameArityAsLayer):
  """Runs `layer`, checking its inputs and outputs against `specification` (`'in->out'`), one
  set of letters for both sides.

  ```python
  tl.AssertFunction('...ab->...c', tl.Flatten(n_axes_to_keep=3))
  ```
  """

  specification: str = "->"
  layer: Layer | None = None
  message: str | None = None

  def __post_init__(self):
    if self.specification.count("->") != 1:
      raise ShapeAssertionError(f"AssertFunction: specification {self.specification!r} needs "
                                "one '->' between the input and output shapes")
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return self.layer.label

  @property
  def sublayers(self) -> tuple:
    return self.layer.sublayers

  def forward(self, *xs):
    before, after = self.specification.split("->")
    bindings = _Bindings(self.specification, _suffix(self.message))
    bindings.check(xs, _parse(before))
    ys = self.call_child(self.layer, xs)
    bindings.check(ys, _parse(after))
    return ys


def assert_shape(specification: str):
  """Decorates a function returning a layer (wrapped in `AssertFunction`) or a `Layer` class
  (its `forward` checked), as Trax's `assert_shape`.

  ```python
  @tl.assert_shape('...d->...')
  def ReduceSum():
    return tl.Fn('ReduceSum', lambda x: jnp.sum(x, axis=-1))
  ```
  """
  message = _call_site()
  before, after = specification.split("->")

  def wrap_class(cls: type) -> type:
    base_forward = cls.forward
    compact = getattr(getattr(base_forward, "__wrapped__", base_forward), "compact", False)

    def forward(self, *xs):
      bindings = _Bindings(specification, _suffix(message))
      bindings.check(xs, _parse(before))
      ys = base_forward(self, *xs)
      bindings.check(unpack(ys) if self.n_out != 1 else (ys,), _parse(after))
      return ys

    namespace = {"forward": nn.compact(forward) if compact else forward,
                 "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), namespace)

  def wrap_function(fn):
    def wrapper(*args, **kwargs):
      return AssertFunction(specification, fn(*args, **kwargs), message)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper

  def wrap(obj):
    return wrap_class(obj) if inspect.isclass(obj) else wrap_function(obj)

  return wrap
