"""Models, optimizers and layers by name, so configs stay plain data.

A config says `config.model.name = 'MLP'`; `get_model('MLP', **kwargs)` finds a model registered
with `register_model` or, failing that, `declax.models.MLP`. Optimizers (`'adamw'`) and layers used
as losses or metrics (`'CrossEntropyLoss'`) work the same way. An unknown name is a `KeyError`
that lists the known names and suggests the closest one.

```python
from declax import registry

@registry.register_model
def TinyMLP(n_classes=10, mode='train'):
  return tl.Serial(tl.Flatten(), tl.Dense(n_classes), tl.LogSoftmax())

model = registry.get_model('TinyMLP', n_classes=3)
```
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any

import optax

__all__ = [
    "RegistryArgumentError", "RegistryError", "get_layer", "get_model", "get_optimizer",
    "layer_names", "model_names", "optimizer_names", "register_layer", "register_model",
    "register_optimizer",
]


class RegistryError(KeyError):
  """An unknown or duplicate name in a registry; the message lists the known names."""

  def __str__(self) -> str:  # KeyError would print the message with quotes around it
    return str(self.args[0]) if self.args else ""


class RegistryArgumentError(TypeError):
  """Keyword arguments (config keys) that a registered model or layer does not take, or
  required ones that are missing; the message lists what it takes."""


_MODELS: dict[str, Callable[..., Any]] = {}
_LAYERS: dict[str, Callable[..., Any]] = {}
_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": optax.adam,
    "adamw": optax.adamw,
    "sgd": optax.sgd,
    "momentum": optax.sgd,  # `make_optimizer` sets momentum=0.9 unless the config says otherwise
    "adafactor": optax.adafactor,
    "lion": optax.lion,
}


# ------------------------------------------------------------------------------------------------
# Lookup helpers
# ------------------------------------------------------------------------------------------------


def _unknown(kind: str, name: str, known: list[str]) -> RegistryError:
  close = [k for k in known if k.lower() == name.lower()]
  close = close or difflib.get_close_matches(name, known, n=1, cutoff=0.5)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return RegistryError(f"Unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}")


def _register(table: dict, kind: str, fn: Callable | None, name: str | None,
              overwrite: bool) -> Callable:
  def add(f: Callable) -> Callable:
    key = name or f.__name__
    if key in table and table[key] is not f and not overwrite:
      raise RegistryError(f"{kind} {key!r} is already registered (pass overwrite=True)")
    table[key] = f
    return f

  return add if fn is None else add(fn)


def _build(kind: str, name: str, factory: Callable, kwargs: dict[str, Any]) -> Any:
  """`factory(**kwargs)`, with arguments it does not take reported by name (config keys)."""
  try:
    signature = inspect.signature(factory)
  except (TypeError, ValueError):  # no signature to check against
    return factory(**kwargs)
  parameters = signature.parameters
  if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
    takes = [n for n, p in parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
      hints = []
      for key in unknown:
        close = difflib.get_close_matches(key, takes, n=1, cutoff=0.6)
        if close:
          hints.append(f"{key!r} -> {close[0]!r}?")
      hint = f" (did you mean {', '.join(hints)})" if hints else ""
      raise RegistryArgumentError(f"{kind} {name!r} does not take argument(s) {unknown}{hint}; "
                                  f"it takes: {', '.join(takes)}")
    missing = [n for n, p in parameters.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and n not in kwargs]
    if missing:
      raise RegistryArgumentError(f"{kind} {name!r} needs argument(s) {missing}; it takes: "
                                  f"{', '.join(takes)}")
  return factory(**kwargs)


def _public_callables(module: Any) -> dict[str, Callable]:
  names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
  return {n: getattr(module, n) for n in names
          if callable(getattr(module, n, None)) and not inspect.ismodule(getattr(module, n))}


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def register_model(fn: Callable | None = None, *, name: str | None = None,
                   overwrite: bool = False) -> Callable:
  """Registers a model constructor under `name` (default: its `__name__`); usable as a decorator.

  ```python
  @register_model
  def MyNet(n_classes=10, mode='train'): ...
  register_model(make_net, name='Net')
  ```
  """
  return _register(_MODELS, "model", fn, name, overwrite)


def _declax_models() -> dict[str, Callable]:
  return _public_callables(importlib.import_module("declax.models"))


def model_names() -> list[str]:
  """Registered models and the models of `declax.models`, sorted."""
  return sorted(set(_MODELS) | set(_declax_models()))


def get_model(name: str, **kwargs: Any) -> Any:
  """Builds model `name` with `kwargs`: a registered model, else `declax.models.<name>`.

  ```python
  model = get_model('MLP', layer_widths=(64,), n_classes=10)
  ```
  """
  if name in _MODELS:
    return _build("model", name, _MODELS[name], kwargs)
  models = _declax_models()
  if name in models:
    return _build("model", name, models[name], kwargs)
  raise _unknown("model", name, model_names())


# ------------------------------------------------------------------------------------------------
# Optimizers
# ------------------------------------------------------------------------------------------------


def register_optimizer(fn: Callable | None = None, *, name: str | None = None,
                       overwrite: bool = False) -> Callable:
  """Registers an optax-style factory `f(learning_rate, **kwargs) -> GradientTransformation`."""
  return _register(_OPTIMIZERS, "optimizer", fn, name, overwrite)


def optimizer_names() -> list[str]:
  return sorted(_OPTIMIZERS)


def get_optimizer(name: str) -> Callable[..., optax.GradientTransformation]:
  """The optimizer factory registered as `name` (e.g. `'adamw'` -> `optax.adamw`)."""
  if name in _OPTIMIZERS:
    return _OPTIMIZERS[name]
  raise _unknown("optimizer", name, optimizer_names())


# ------------------------------------------------------------------------------------------------
# Layers (losses and metrics named in configs)
# ------------------------------------------------------------------------------------------------


def register_layer(fn: Callable | None = None, *, name: str | None = None,
                   overwrite: bool = False) -> Callable:
  """Registers a layer constructor for configs (`config.train.loss = 'MyLoss'`)."""
  return _register(_LAYERS, "layer", fn, name, overwrite)


def _declax_layers() -> dict[str, Callable]:
  import declax.layers as tl

  names = [n for n in dir(tl) if n[:1].isupper()]
  return {n: getattr(tl, n) for n in names if callable(getattr(tl, n))}


def layer_names() -> list[str]:
  return sorted(set(_LAYERS) | set(_declax_layers()))


def get_layer(name: str, **kwargs: Any) -> Any:
  """Builds layer `name`: a registered one, else `declax.layers.<name>`.

  ```python
  loss = get_layer('CrossEntropyLoss')
  ```
  """
  if name in _LAYERS:
    return _build("layer", name, _LAYERS[name], kwargs)
  layers = _declax_layers()
  if name in layers:
    return _build("layer", name, layers[name], kwargs)
  raise _unknown("layer", name, layer_names())


def _bits_per_token() -> Any:
  """Weighted cross-entropy of logits in bits (e.g. bits per byte for a byte-level LM)."""
  import declax.layers as tl

  return tl.Serial(tl.WeightedCategoryCrossEntropy(),
                   tl.Fn("BitsPerToken", lambda nats: nats / math.log(2.0)))


register_layer(_bits_per_token, name="BitsPerToken")
