"""The data stack, the `Layer` base class, errors that name the failing layer, and model printing.

Every declax layer is a `flax.linen.Module` that also knows how many items it takes from the data
stack (`n_in`) and how many it puts back (`n_out`). Stack items are packaged like Trax: no items is
`()`, one item is a bare array, several items are a tuple whose element 0 is the top of the stack.

Subclasses implement `forward(self, *items)` and return one array (when `n_out == 1`) or a tuple of
`n_out` arrays. `Layer.__call__` unpacks the stack, checks the arity, calls `forward`, checks the
outputs and, when anything fails, raises a `LayerError` that names the failing layer by its
position in the model tree, where it was created and what it received.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from declax.layers.custom_grad import run_forward
from declax.text_table import format_table

MODES = ("train", "eval", "predict")

_FLAX_DIR = os.path.dirname(os.path.dirname(nn.__file__))
_LAYERS_DIR = os.path.dirname(__file__)
_SKIPPED_DIRS = (_FLAX_DIR, _LAYERS_DIR, os.path.dirname(dataclasses.__file__))


# ------------------------------------------------------------------------------------------------
# Stack packaging
# ------------------------------------------------------------------------------------------------


def unpack(stack: Any) -> tuple:
  """Returns stack items as a tuple: `()` -> `()`, an array -> `(array,)`, a tuple -> itself."""
  if isinstance(stack, (tuple, list)):
    return tuple(stack)
  return (stack,)


def pack(items: Sequence[Any]) -> Any:
  """Inverse of `unpack`: one item is returned bare, zero or several as a tuple."""
  items = tuple(items)
  return items[0] if len(items) == 1 else items


def describe(items: Sequence[Any]) -> str:
  """Short signature of stack items, e.g. `'f32[3,4], i32[3]'`."""
  return ", ".join(_describe_item(x) for x in items) or "()"


def _describe_item(x: Any) -> str:
  shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
  if shape is None or dtype is None:
    return type(x).__name__
  kind = np.dtype(dtype)
  short = {"f": "f", "i": "i", "u": "u", "b": "bool", "c": "c"}.get(kind.kind, kind.name)
  bits = str(kind.itemsize * 8) if kind.kind in "fiuc" else ""
  if kind.name == "bfloat16":
    short, bits = "bf", "16"
  return f"{short}{bits}[{','.join(str(d) for d in shape)}]"


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Origin:
  """Where a layer was created (the first frame outside declax.layers and flax)."""

  location: str
  user_name: str | None = None


def _caller_location() -> str:
  frame = sys._getframe(2)
  while frame is not None:
    filename = frame.f_code.co_filename
    # Subclasses that extend __post_init__ are part of the construction, not its call site.
    if (not filename.startswith(_SKIPPED_DIRS) and not filename.startswith("<")
        and frame.f_code.co_name != "__post_init__"):
      return f"{os.path.relpath(filename) if filename.startswith(os.getcwd()) else filename}:" \
             f"{frame.f_lineno}"
    frame = frame.f_back
  return "<unknown>"


@dataclasses.dataclass(frozen=True)
class Frame:
  """One level of a `LayerError`: a layer, where it was created and what it received."""

  label: str  # e.g. 'Serial[2]' (position of the child that failed) or 'Dense_4' at the leaf
  header: str
  location: str
  received: str


class LayerError(ValueError):
  """A failure inside a layer, chained from the outermost layer down to the one that failed.

  The message starts with the path (`Serial[2] > Branch[1] > Dense_4`) and the original error,
  then lists each level with the file:line where it was created and the stack it received. The
  original exception is `__cause__` (and `.cause`).
  """

  def __init__(self, frames: Sequence[Frame], cause: BaseException):
    self.frames = tuple(frames)
    self.cause = cause
    super().__init__(self._message())

  @property
  def path(self) -> str:
    return " > ".join(f.label for f in self.frames)

  def _message(self) -> str:
    width = max(len(f.header) for f in self.frames)
    lines = [f"{self.path}: {type(self.cause).__name__}: {self.cause}"]
    for f in self.frames:
      lines.append(f"  {f.header:<{width}}  created at {f.location}, received {f.received}")
    return "\n".join(lines)

  def __reduce__(self):
    return (LayerError, (self.frames, self.cause))


# ------------------------------------------------------------------------------------------------
# Layer
# ------------------------------------------------------------------------------------------------


def flatten_layers(items: Sequence[Any]) -> list:
  flat = []
  for item in items:
    if isinstance(item, (list, tuple)):
      flat.extend(flatten_layers(item))
    elif item is not None:
      flat.append(item)
  return flat


class Layer(nn.Module):
  """Base class of all declax layers: a Linen module that works on the data stack.

  Subclasses define `forward(self, *items)` (decorate it with `nn.compact` if it creates
  parameters) and override `n_in`/`n_out` when they are not 1. Sublayers are ordinary dataclass
  fields; combinators that take them positionally define `_trax_args` (e.g. `Serial(a, b, c)`).

  ```python
  class Double(Layer):
    def forward(self, x):
      return 2 * x
  Double().apply({}, jnp.ones(3))   # [2., 2., 2.]
  ```
  """

  origin: Origin | None = dataclasses.field(default=None, kw_only=True, compare=False, repr=False)

  # Optional hook `_trax_args(*args, **kwargs) -> dataclass fields` for constructors that take
  # Trax-style arguments (`Serial(a, b, c)`, `Fn(name, f)`); Linen's clone() passes fields back
  # by keyword, so the hook must accept those too.
  _trax_args = None

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    convert = getattr(cls, "_trax_args", None)
    if convert is None:
      return
    # Flax wraps module methods (a staticmethod included) to push the module context; called as
    # a plain function the wrapper would take the first positional sublayer for `self` and make
    # it the parent of any layer created inside (e.g. the `Serial` for a `None` branch).
    convert = getattr(convert, "__wrapped__", convert)
    dataclass_init = cls.__init__

    def __init__(self, *args, **fields):
      dataclass_init(self, **convert(*args, **fields))

    __init__.__doc__ = dataclass_init.__doc__
    __init__.__signature__ = inspect.signature(convert)
    cls.__init__ = __init__

  def __post_init__(self):
    if self.origin is None:
      object.__setattr__(self, "origin", Origin(_caller_location(), self.name))
    mode = getattr(self, "mode", None)
    if mode is not None and mode not in MODES:
      raise ValueError(f"{type(self).__name__}: mode must be one of {MODES}, got {mode!r}")
    super().__post_init__()

  # -- stack arity ---------------------------------------------------------------------------

  @property
  def n_in(self) -> int:
    return 1

  @property
  def n_out(self) -> int:
    return 1

  def forward(self, *items):
    raise NotImplementedError(f"{type(self).__name__} must implement forward(self, *items)")

  # -- printing -----------------------------------------------------------------------------

  @property
  def label(self) -> str:
    """The printed name: the user's `name=` if given, else `default_label`."""
    user_name = self.origin.user_name if self.origin else None
    return user_name or self.default_label

  @property
  def default_label(self) -> str:
    return type(self).__name__

  @property
  def header(self) -> str:
    """Trax's header: label, then `_in{n}` / `_out{n}` when they are not 1."""
    text = self.label
    if self.n_in != 1:
      text += f"_in{self.n_in}"
    if self.n_out != 1:
      text += f"_out{self.n_out}"
    return text

  @property
  def sublayers(self) -> tuple:
    """Child layers in the order they are printed (dataclass field order)."""
    children = []
    for field in dataclasses.fields(self):
      if field.name in ("parent", "name", "origin"):
        continue
      value = getattr(self, field.name)
      if isinstance(value, nn.Module):
        children.append(value)
      elif isinstance(value, (tuple, list)):
        children.extend(v for v in value if isinstance(v, nn.Module))
    return tuple(children)

  def __str__(self) -> str:
    children = self.sublayers
    if not children:
      return self.header
    body = "\n".join("  " + str(c).replace("\n", "\n  ") for c in children)
    return f"{self.header}[\n{body}\n]"

  def __repr__(self) -> str:  # Trax's short form, not Flax's dump of every field
    return str(self)

  # -- calling ------------------------------------------------------------------------------

  def _frame(self, items: Sequence[Any], child_name: str | None) -> Frame:
    label = self.label if child_name is None else f"{self.label}[{self._position(child_name)}]"
    location = self.origin.location if self.origin else "<unknown>"
    return Frame(label, self.header, location, describe(items))

  def _position(self, child_name: str) -> str:
    match = re.fullmatch(r"(.+)_(\d+)", child_name)
    if match and isinstance(getattr(self, match.group(1), None), (tuple, list)):
      return match.group(2)
    return child_name

  # Layers that Trax builds as a `Serial` (e.g. `CausalAttention`) set this: called at the top
  # level with more items than `n_in`, they pass the extra items through under their outputs.
  passes_extra_items = False

  def _check_arity(self, items: tuple) -> tuple[tuple, tuple]:
    """Splits the received items into this layer's inputs and items passed through below."""
    if (self.passes_extra_items and len(items) > self.n_in
        and not isinstance(self.parent, Layer)):
      return items[: self.n_in], items[self.n_in :]
    if len(items) != self.n_in:
      raise ValueError(f"{self.header} got {len(items)} input(s), expects {self.n_in}")
    return items, ()

  def __call__(self, stack: Any = ()) -> Any:
    items = unpack(stack)
    try:
      _check_item_types(items)
      inputs, passed = self._check_arity(items)
      outputs = unpack_outputs(run_forward(self, inputs), self)
    except LayerError as error:
      child_name = getattr(error, "_child_name", None)
      frames = (self._frame(items, child_name),) + error.frames
      raise _chain(frames, error.cause, self) from error.cause
    except Exception as error:
      raise _chain((self._frame(items, None),), error, self) from error
    return pack(outputs + passed)

  def call_child(self, child: Layer, items: Sequence[Any]) -> tuple:
    """Runs a sublayer on stack items and returns its outputs as a tuple."""
    return unpack_outputs(child(pack(items)), child)


def _check_item_types(items: Sequence[Any]) -> None:
  """Stack items are arrays of numbers or booleans: strings, objects and None are refused here
  rather than deep inside JAX."""
  for index, item in enumerate(items):
    if item is None or isinstance(item, (str, bytes)):
      raise TypeError(f"stack item {index} is {item!r}; layers take arrays")
    dtype = getattr(item, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind in "OSUMm":  # (bfloat16 is kind V)
      raise TypeError(f"stack item {index} has dtype {np.dtype(dtype)} ({describe([item])}); "
                      "layers take arrays of numbers or booleans")


def _chain(frames: Sequence[Frame], cause: BaseException, layer: Layer) -> LayerError:
  error = LayerError(frames, cause)
  error._child_name = layer.name  # lets the parent say which of its children failed
  return error


def unpack_outputs(result: Any, layer: Layer) -> tuple:
  """Checks a layer's result against its `n_out` and returns the outputs as a tuple."""
  n_out = layer.n_out
  if n_out == 1:
    if isinstance(result, (tuple, list)):
      if len(result) == 1:
        return tuple(result)
      raise ValueError(f"{layer.header} returned {len(result)} outputs, but n_out is 1")
    return (result,)
  result = () if result is None else result
  if not isinstance(result, (tuple, list)) or len(result) != n_out:
    count = len(result) if isinstance(result, (tuple, list)) else 1
    raise ValueError(f"{layer.header} returned {count} output(s), but n_out is {n_out}")
  return tuple(result)


# ------------------------------------------------------------------------------------------------
# Modes
# ------------------------------------------------------------------------------------------------


def _map_layers(value: Any, fn: Callable[[nn.Module], nn.Module]) -> Any:
  if isinstance(value, nn.Module):
    return fn(value)
  if isinstance(value, (tuple, list)) and any(isinstance(v, nn.Module) for v in value):
    return type(value)(_map_layers(v, fn) for v in value)
  return value


def with_mode(model: nn.Module, mode: str) -> nn.Module:
  """Returns the same layer tree with every `mode` field set to `mode`.

  The parameter structure does not depend on the mode, so variables of one apply to the other;
  a layer instance shared in several places stays shared.

  ```python
  eval_model = tl.with_mode(model, 'eval')
  y = eval_model.apply(variables, x)       # dropout off, BatchNorm uses running statistics
  ```
  """
  if mode not in MODES:
    raise ValueError(f"with_mode: mode must be one of {MODES}, got {mode!r}")
  memo: dict[int, nn.Module] = {}

  def convert(layer: nn.Module) -> nn.Module:
    if id(layer) in memo:
      return memo[id(layer)]
    updates = {}
    for field in dataclasses.fields(layer):
      if field.name in ("parent", "name") or not field.init:
        continue
      value = getattr(layer, field.name)
      if field.name == "mode":
        updates["mode"] = mode
      else:
        new_value = _map_layers(value, convert)
        if new_value is not value:
          updates[field.name] = new_value
    memo[id(layer)] = layer.clone(**updates) if updates else layer
    return memo[id(layer)]

  return convert(model)


# ------------------------------------------------------------------------------------------------
# Parameters with logical axis names
# ------------------------------------------------------------------------------------------------


def param_init(initializer: Callable, axes: Sequence[str | None] | None) -> Callable:
  """An initializer that carries logical axis names (or a plain one when `axes` is None)."""
  if axes is None:
    return initializer
  return nn.with_logical_partitioning(initializer, tuple(axes))


def constrain(x: jax.Array, axes: Sequence[str | None] | None) -> jax.Array:
  """Logical sharding constraint on an activation (a no-op outside a mesh and axis rules)."""
  if axes is None:
    return x
  return nn.with_logical_constraint(x, tuple(axes))


# ------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------


def _param_count(tree: Any) -> int:
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(nn.unbox(tree))))


def summary(model: nn.Module, x: Any, *, rngs: Any = None, mesh: Any = None,
            rules: Any = None) -> str:
  """A table of every layer: path, header, arity, output shapes/dtypes and parameter count.

  Nothing is computed for real (the model is traced with `jax.eval_shape`). With `mesh` (a
  `jax.sharding.Mesh`), a second table lists every parameter's `PartitionSpec` and bytes per
  device under the logical axis `rules` (default: `declax.sharding` defaults).

  ```python
  print(declax.summary(model, jnp.zeros((8, 784))))
  ```
  """
  rows: list[tuple] = []

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, Layer):
      return next_fun(*args, **kwargs)
    row = len(rows)
    rows.append(None)  # reserve the slot so parents are listed before their children
    result = next_fun(*args, **kwargs)
    path = "/".join(module.scope.path) or "(root)"
    outputs = unpack(result) if module.n_out != 1 else (result,)
    rows[row] = (path, module.header, f"{module.n_in}->{module.n_out}", describe(outputs))
    return result

  rng = jax.random.PRNGKey(0) if rngs is None else rngs

  def init(stack):
    with nn.intercept_methods(record):
      return model.init(rng, stack)

  variables = jax.eval_shape(init, x)
  params = nn.unbox(variables.get("params", {}))
  seen = set()
  table = []
  for path, head, arity, outputs in rows:
    if path in seen:  # a shared layer is listed once
      continue
    seen.add(path)
    subtree = params
    for part in ([] if path == "(root)" else path.split("/")):
      subtree = subtree.get(part, {}) if isinstance(subtree, dict) else {}
    table.append((path, head, arity, outputs, f"{_param_count(subtree):,}"))
  lines = [format_table(("path", "layer", "n_in->n_out", "outputs", "params"), table),
           f"Total parameters: {_param_count(params):,}"]
  if mesh is not None:
    from declax.sharding import sharding_table  # late import: sharding needs a mesh anyway

    lines.append("")
    lines.append(sharding_table(variables.get("params", {}), mesh, rules))
  return "\n".join(lines)
