"""Any Flax Linen module inside a declax combinator.

A plain `nn.Module` placed in `Serial`, `Branch`, `Parallel`, `Residual`, ... is a 1 -> 1 layer
(it is wrapped in `Linen` automatically and prints as its class name). `Linen(module, n_in=...,
n_out=...)` states another arity: the module is called with the top `n_in` stack items as
positional arguments and returns one array or a tuple of `n_out` arrays.

Modes: a wrapped module whose `__call__` takes a `deterministic` argument (`nn.Dropout`, Flax's
attention) gets `deterministic=True` in `'eval'`/`'predict'` mode and `False` in `'train'`, unless
the module fixes it itself (`nn.Dropout(0.1, deterministic=True)`). Its random numbers come from
the `'dropout'` stream, which the declax train step always provides.

```python
model = tl.Serial(nn.Dense(32), tl.Relu(), nn.Dense(2))      # prints Serial[ Dense Relu Dense ]
pair = tl.Linen(nn.Bilinear(...), n_in=2)                    # a 2 -> 1 layer
```
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.linen as nn

from declax.errors import DeclaxError
from declax.layers.base import Layer


class LinenArityError(DeclaxError, TypeError):
  """A Linen module's `__call__` cannot take the stack items its wrapper would pass it."""


class Linen(Layer):
  """A Linen module as an `n_in` -> `n_out` layer on the data stack.

  ```python
  layer = tl.Linen(nn.Dense(4))                 # the same as putting nn.Dense(4) in a Serial
  attend = tl.Linen(nn.MultiHeadDotProductAttention(2), n_in=2)   # (queries, keys_values)
  ```
  """

  module: nn.Module | None = None
  n_in: int = 1
  n_out: int = 1
  mode: str = "train"

  def __post_init__(self):
    if not isinstance(self.module, nn.Module) or isinstance(self.module, Layer):
      raise LinenArityError(f"Linen wraps a flax.linen.Module, got {type(self.module).__name__}")
    _check_call(self.module, self.n_in)
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return type(self.module).__name__

  @property
  def sublayers(self) -> tuple:
    return ()  # the wrapped module prints as this layer, not as a child

  def forward(self, *items):
    kwargs = {}
    if _takes_deterministic(self.module):
      kwargs["deterministic"] = self.mode != "train"
    return self.module(*items, **kwargs)


def as_layer(item: Any) -> Any:
  """A plain Linen module wrapped as a 1 -> 1 `Linen` layer; anything else is returned as is."""
  if isinstance(item, nn.Module) and not isinstance(item, Layer):
    return Linen(item, origin=None)
  return item


def _check_call(module: nn.Module, n_in: int) -> None:
  name = type(module).__name__
  if not callable(module):
    raise LinenArityError(f"{name} has no __call__, so it cannot run as a layer; wrap a module "
                          "whose __call__ takes the stack items, or write a declax Layer")
  try:
    signature = inspect.signature(module.__call__)
  except (TypeError, ValueError):
    return  # no signature to check (e.g. a C callable); errors surface at the first call
  try:
    signature.bind(*range(n_in))
  except TypeError as error:
    required = [p.name for p in signature.parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    raise LinenArityError(
        f"{name}.__call__{signature} cannot take {n_in} stack item(s) ({error}); state its arity "
        f"with tl.Linen({name}(...), n_in={max(len(required), 1)}, n_out=...)") from None


def _takes_deterministic(module: nn.Module) -> bool:
  try:
    parameters = inspect.signature(module.__call__).parameters
  except (TypeError, ValueError):
    return False
  return "deterministic" in parameters and getattr(module, "deterministic", None) is None
