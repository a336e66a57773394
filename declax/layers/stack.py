"""The data stack: how items are packaged, described, and run through layers one after another.

Stack items are packaged like Trax: no items is `()`, one item is a bare array, several items are
a tuple whose element 0 is the top of the stack. Every combinator (and the train/eval step) moves
items with the two helpers Trax uses, `inputs_from_stack` and `outputs_onto_stack`, and runs a
sequence of layers with `run_serial`.

```python
run_serial(parent, [tl.Dup(), tl.Add()], (x,))   # (x + x,)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


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


def flatten_layers(items: Sequence[Any]) -> list:
  """Nested lists/tuples of layers as one flat list; `None` entries are dropped."""
  flat = []
  for item in items:
    if isinstance(item, (list, tuple)):
      flat.extend(flatten_layers(item))
    elif item is not None:
      flat.append(item)
  return flat


def inputs_from_stack(stack: Sequence[Any], n_in: int) -> tuple:
  """The top `n_in` items, the inputs of the next layer (Trax's helper of the same name)."""
  return tuple(stack[:n_in])


def outputs_onto_stack(outputs: Sequence[Any], stack: Sequence[Any], n_in: int,
                       n_side_outputs: int = 0) -> tuple:
  """The stack after a layer replaced its `n_in` inputs by `outputs` (Trax's helper).

  The last `n_side_outputs` outputs go to the bottom of the stack instead of the top.
  """
  keep = len(outputs) - n_side_outputs
  return (*outputs[:keep], *stack[n_in:], *outputs[keep:])


def stack_arity(layers: Sequence[Any], n_side_outputs: int = 0) -> tuple[int, int]:
  """`(n_in, n_out)` of running `layers` one after another on the stack (Trax's arithmetic).

  With `n_side_outputs`, each layer's last outputs go to the bottom and stay there.
  """
  depth, needed = 0, 0
  for layer in layers:
    depth += layer.n_in
    needed = max(needed, depth)
    depth -= layer.n_out - n_side_outputs
  return needed, needed - depth + n_side_outputs * len(layers)


def run_serial(parent: Any, layers: Sequence[Any], items: Sequence[Any], *,
               n_side_outputs: int = 0, on_outputs: Any = None) -> tuple:
  """Runs `layers` one after another on `items` as sublayers of `parent`; returns the stack.

  `on_outputs(i, outputs) -> outputs`, if given, sees each layer's outputs before they are
  pushed (e.g. to add sharding constraints).
  """
  stack = tuple(items)
  for i, layer in enumerate(layers):
    outputs = parent.call_child(layer, inputs_from_stack(stack, layer.n_in))
    if on_outputs is not None:
      outputs = tuple(on_outputs(i, outputs))
    stack = outputs_onto_stack(outputs, stack, layer.n_in, n_side_outputs)
  return stack


class SerialArity:
  """`n_in` / `n_out` of a layer that runs its `layers` one after another (1 -> 1 when empty);
  mixed into `Serial` and `ReversibleSerial` ahead of `Layer`."""

  @property
  def n_in(self) -> int:
    return stack_arity(self.layers)[0] if self.layers else 1

  @property
  def n_out(self) -> int:
    return stack_arity(self.layers)[1] if self.layers else 1
