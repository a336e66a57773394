"""Models, layers, optimizers and datasets by name, so configs stay plain data.

One `Registry` class serves every kind: `register` (also a decorator), `get` (the factory),
`build` (the factory called with keyword arguments, checked by name against its signature),
`names` and `in`. A name is looked up among the registered ones, then among declax's own
(`declax.models.MLP`, `declax.layers.CrossEntropyLoss`, optax's optimizers). An unknown name is
a `RegistryError` that lists the known names and suggests the closest one.

```python
from declax import registry
import declax.layers as tl

@registry.register_model
def TinyMLP(n_classes=10, mode='train'):
  return tl.Serial(tl.Flatten(), tl.Dense(n_classes), tl.LogSoftmax())

model = registry.get_model('TinyMLP', n_classes=3)          # == registry.MODELS.build(...)
```
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optax

from declax.errors import DeclaxError, did_you_mean

__all__ = [
    "LAYERS", "MODELS", "OPTIMIZERS", "Registry", "RegistryArgumentError", "RegistryError",
    "get_layer", "get_model", "get_optimizer", "layer_names", "model_names", "optimizer_names",
    "register_layer", "register_model", "register_optimizer",
]


class RegistryError(DeclaxError, KeyError, ValueError):
  """An unknown or duplicate name in a registry; the message lists the known names.

  A `KeyError` (a failed lookup) and a `ValueError` (a bad config value) alike."""

  def __str__(self) -> str:  # KeyError would print the message with quotes around it
    return str(self.args[0]) if self.args else ""


class RegistryArgumentError(DeclaxError, TypeError):
  """Keyword arguments (config keys) that a registered factory does not take, or required ones
  that are missing; the message lists what it takes."""


class Registry:
  """Names of one `kind` mapped to factories (or any values, e.g. dataset specs).

  `builtins()` returns declax's own entries (looked up lazily, after the registered ones).

  ```python
  SCHEDULERS = Registry('scheduler')
  SCHEDULERS.register(optax.constant_schedule, name='constant')
  SCHEDULERS.build('constant', value=0.1)
  ```
  """

  def __init__(self, kind: str, builtins: Callable[[], Mapping[str, Any]] | None = None):
    self.kind = kind
    self.table: dict[str, Any] = {}
    self._builtins = builtins or dict

  def register(self, fn: Any = None, *, name: str | None = None,
               overwrite: bool = False) -> Any:
    """Adds `fn` under `name` (default: its `__name__`); usable as a decorator."""
    def add(f: Any) -> Any:
      key = name or f.__name__
      if key in self.table and not overwrite:
        raise RegistryError(f"{self.kind} {key!r} is already registered (pass overwrite=True)")
      self.table[key] = f
      return f

    return add if fn is None else add(fn)

  def names(self) -> list[str]:
    """Registered and built-in names, sorted."""
    return sorted(set(self.table) | set(self._builtins()))

  def __contains__(self, name: str) -> bool:
    return name in self.table or name in self._builtins()

  def get(self, name: str) -> Any:
    """The entry called `name` (registered first, then built in)."""
    if name in self.table:
      return self.table[name]
    builtins = self._builtins()
    if name in builtins:
      return builtins[name]
    known = self.names()
    closest = [k for k in known if k.lower() == name.lower()] or known  # a case slip first
    hint = did_you_mean(repr(name), [repr(k) for k in closest], cutoff=0.5)
    raise RegistryError(f"Unknown {self.kind} {name!r}{hint} (known {self.kind}s: "
                        f"{', '.join(known)})")

  def check_arguments(self, name: str, kwargs: Mapping[str, Any]) -> None:
    """Raises `RegistryArgumentError` for keyword arguments `name`'s factory does not take, or
    required ones missing from `kwargs` (so a config key is reported by name)."""
    try:
      parameters = inspect.signature(self.get(name)).parameters
    except (TypeError, ValueError):  # no signature to check against
      return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
      return
    takes = [n for n, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                            p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
      hint = did_you_mean(repr(unknown[0]), [repr(t) for t in takes])
      raise RegistryArgumentError(f"{self.kind} {name!r} does not take argument(s) "
                                  f"{unknown}{hint} (it takes: {', '.join(takes)})")
    missing = [n for n in takes if parameters[n].default is inspect.Parameter.empty
               and n not in kwargs]
    if missing:
      raise RegistryArgumentError(f"{self.kind} {name!r} needs argument(s) {missing} (it "
                                  f"takes: {', '.join(takes)})")

  def build(self, name: str, **kwargs: Any) -> Any:
    """`get(name)(**kwargs)`, with arguments it does not take reported by name."""
    self.check_arguments(name, kwargs)
    return self.get(name)(**kwargs)


def _public_callables(module_name: str) -> dict[str, Callable]:
  module = importlib.import_module(module_name)
  names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
  return {n: getattr(module, n) for n in names
          if callable(getattr(module, n, None)) and not inspect.ismodule(getattr(module, n))}


def _declax_layers() -> dict[str, Callable]:
  return {n: f for n, f in _public_callables("declax.layers").items() if n[:1].isupper()}


MODELS = Registry("model", lambda: _public_callables("declax.models"))
LAYERS = Registry("layer", _declax_layers)  # losses and metrics named in configs
@functools.cache
def _optax_optimizers() -> dict[str, Callable]:
  """Every optax factory that takes a `learning_rate` (`adam`, `lamb`, `lion`, `adafactor`, ...)."""
  found = {}
  for name in dir(optax):
    if not name[:1].islower() or name.startswith(("scale", "inject")):
      continue
    with warnings.catch_warnings(record=True) as caught:  # deprecated aliases warn: left out
      warnings.simplefilter("always")
      fn = getattr(optax, name)
    if caught or not callable(fn) or inspect.ismodule(fn):
      continue
    try:
      parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
      continue
    if next(iter(parameters), None) == "learning_rate":
      found[name] = fn
  return found


OPTIMIZERS = Registry("optimizer", _optax_optimizers)  # optax-style `f(learning_rate, **kwargs)`
OPTIMIZERS.register(optax.sgd, name="momentum")  # `make_optimizer` sets momentum=0.9

# Trax-style names for the same operations (`get_model('MLP', n_classes=10)`, ...).
register_model, get_model, model_names = MODELS.register, MODELS.build, MODELS.names
register_layer, get_layer, layer_names = LAYERS.register, LAYERS.build, LAYERS.names
register_optimizer, get_optimizer = OPTIMIZERS.register, OPTIMIZERS.get
optimizer_names = OPTIMIZERS.names


@register_layer(name="BitsPerToken")
def _bits_per_token() -> Any:
  """Weighted cross-entropy of logits in bits (e.g. bits per byte for a byte-level LM)."""
  import declax.layers as tl

  return tl.Serial(tl.WeightedCategoryCrossEntropy(),
                   tl.Fn("BitsPerToken", lambda nats: nats / math.log(2.0)))
