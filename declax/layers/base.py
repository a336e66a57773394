"""The `Layer` base class: a Linen module that works on the data stack.

Every declax layer is a `flax.linen.Module` that also knows how many items it takes from the data
stack (`n_in`) and how many it puts back (`n_out`); stack packaging is in `declax.layers.stack`.

Subclasses implement `forward(self, *items)` and return one array (when `n_out == 1`) or a tuple of
`n_out` arrays. `Layer.__call__` unpacks the stack, checks the arity and the layer's `contract`
(its shape/rank/dtype checks, written with chex), calls `forward`, checks the outputs and, when
anything fails, raises a `LayerError` that names the failing layer by its position in the model
tree, where it was created and what it received.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from declax.layers.custom_grad import run_forward
from declax.layers.errors import Frame, LayerError, Origin, caller_location
from declax.layers.modes import MODES, check_mode, with_mode
from declax.layers.partitioning import constrain, param_init
from declax.layers.stack import describe, flatten_layers, pack, unpack

__all__ = ["MODES", "Layer", "LayerError", "constrain", "describe", "flatten_layers", "pack",
           "param_init", "summary", "unpack", "unpack_outputs", "with_mode"]


class Layer(nn.Module):
  """Base class of all declax layers: a Linen module that works on the data stack.

  Subclasses define `forward(self, *items)` (decorate it with `nn.compact` if it creates
  parameters). A constant arity is a class attribute (`n_in = 2`); a computed one is a property.
  Sublayers are ordinary dataclass fields. `contract(self, *inputs)` states the inputs' shapes,
  ranks and dtypes with chex; it runs before `forward`.

  ```python
  class Double(Layer):
    def forward(self, x):
      return 2 * x
  Double().apply({}, jnp.ones(3))   # [2., 2., 2.]
  ```
  """

  origin: Origin | None = dataclasses.field(default=None, kw_only=True, compare=False, repr=False)

  n_in = 1
  n_out = 1

  def __post_init__(self):
    if self.origin is None:
      object.__setattr__(self, "origin", Origin(caller_location(), self.name))
    mode = getattr(self, "mode", None)
    if mode is not None:
      check_mode(type(self).__name__, mode)
    super().__post_init__()

  def contract(self, *inputs) -> None:
    """Checks the inputs with chex (`chex.assert_rank`, `assert_shape`, ...); none by default."""

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

  # `Serial`, and layers that Trax builds as one (e.g. `CausalAttention`), set this: called at
  # the top level with more items than `n_in`, they pass the extra items through under their
  # outputs.
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
      self.contract(*inputs)
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


# Older import path of the summary (it needs `Layer`, hence imported last).
from declax.layers.summary import summary  # noqa: E402
