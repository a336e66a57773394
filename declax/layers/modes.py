"""Modes: `'train'`, `'eval'` and `'predict'`, and `with_mode`, which switches a whole layer tree.

Layers with a `mode` field change behaviour with it (dropout is off outside `'train'`, decoding
caches exist in `'predict'`). In `'predict'` mode every decoding cache follows Flax's idiom:
`is_initialized = self.has_variable('cache', name)` before creating the variable, and the cache
advances only when it already existed (so `init` leaves it empty).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

MODES = ("train", "eval", "predict")


def check_mode(owner: str, mode: str) -> None:
  """Raises a ValueError naming `owner` when `mode` is not one of `MODES`."""
  if mode not in MODES:
    raise ValueError(f"{owner}: mode must be one of {MODES}, got {mode!r}")


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
  check_mode("with_mode", mode)
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
