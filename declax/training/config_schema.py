"""What a training config may contain: the keys of the base config, checked before anything is
built.

A misspelt key is otherwise silently ignored (`config.train.eval_evry = 50` leaves evaluation at
its default). The keys, types and defaults are written once, in `declax.training.default_config`;
`resolve_config` checks a config against them and returns it merged over the defaults.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import ml_collections

from declax.errors import DeclaxError, did_you_mean
from declax.training import default_config

__all__ = ["ConfigError", "SECTIONS", "resolve_config", "to_dict", "validate_config"]


class ConfigError(DeclaxError, ValueError):
  """A config key or training argument that is unknown, missing or has an unusable value; the
  message names it."""


def to_dict(value: Any) -> Any:
  """A ConfigDict (or plain value) as plain dicts, lists turned into tuples."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {k: to_dict(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(to_dict(v) for v in value)
  return value


_BASE = default_config.get_config()
DEFAULTS: dict[str, Any] = to_dict(_BASE)
# section -> its keys (model's keys are the model's own arguments, mesh's are checked by
# declax.sharding)
SECTIONS = {s: tuple(DEFAULTS[s]) for s in DEFAULTS
            if s not in default_config.OPEN_SECTIONS and s not in default_config.SCALARS}
# Counts that may be 0 (every other integer key must be >= 1).
_ZERO_OK = ("train.steps", "train.seed", "schedule.warmup_steps", "schedule.plateau_cooldown")


def _check_keys(config: Mapping[str, Any]) -> None:
  missing = [s for s in DEFAULTS if s not in config]
  for key in config:  # other top-level sections (e.g. `sample`) belong to the scripts
    hint = did_you_mean(key, missing, prefix="config.") if key not in DEFAULTS else ""
    if hint:
      raise ConfigError(f"config.{key} is not a known section{hint}")
  for section, known in SECTIONS.items():
    values = config.get(section, {})
    if not isinstance(values, Mapping):
      raise ConfigError(f"config.{section} must be a dict of settings, got "
                        f"{type(values).__name__}")
    for key in values:
      if key not in known:
        hint = did_you_mean(key, known, prefix=f"config.{section}.")
        raise ConfigError(f"config.{section}.{key} is not a known key{hint} (config.{section} "
                          f"takes: {', '.join(sorted(known))})")


def _check_values(config: Mapping[str, Any]) -> None:
  for path in default_config.REQUIRED:
    section, key = path.split(".")
    if config[section].get(key) is None:
      raise ConfigError(f"config.{path} is missing (required)")
  for section in SECTIONS:
    for key in SECTIONS[section]:
      if _BASE[section].get_type(key) is not int:
        continue
      path, value = f"{section}.{key}", config[section][key]
      none_ok = path not in default_config.REQUIRED and (
          DEFAULTS[section][key] is None or path in default_config.NONE_OK)
      low = 0 if path in _ZERO_OK else 1
      if value is None and none_ok:
        continue
      if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        allowed = f"an integer >= {low}" + (" or None" if none_ok else "")
        raise ConfigError(f"config.{path} must be {allowed}, got {value!r}")


def _non_finite(value: Any, path: str) -> list[str]:
  """Paths under `value` holding a NaN or infinite number."""
  if isinstance(value, Mapping):
    return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}")]
  if isinstance(value, (tuple, list)):
    return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    return [] if math.isfinite(value) else [f"{path}={value}"]
  return []


def _check_meaning(config: Mapping[str, Any]) -> None:
  """Values of the right type that would train silently wrong (gradient ascent, no clipping,
  a loss without gradient, an overflowing seed)."""
  bad = [p for section, values in config.items() for p in _non_finite(values, f"config.{section}")]
  if bad:
    raise ConfigError(f"{bad[0]} is not a finite number; set a finite value")
  lr = config["schedule"]["learning_rate"]
  if isinstance(lr, numbers.Real) and lr < 0:
    raise ConfigError(f"config.schedule.learning_rate must be >= 0, got {lr} (a negative rate "
                      "ascends the loss)")
  clip = config["optimizer"]["clip_norm"]
  if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real)
                           or clip <= 0):
    raise ConfigError(f"config.optimizer.clip_norm must be a number > 0 or None (no clipping), "
                      f"got {clip!r}")
  loss = config["train"]["loss"]
  if isinstance(loss, str) and loss.endswith("Accuracy"):
    raise ConfigError(f"config.train.loss={loss!r} is a metric without a gradient (nothing "
                      "would be learned); use a loss such as 'CrossEntropyLoss' and list "
                      f"{loss!r} in config.train.metrics")
  seed = config["train"]["seed"]
  if isinstance(seed, numbers.Integral) and seed >= 2**63:
    raise ConfigError(f"config.train.seed must be < 2**63 (a signed 64-bit integer), got {seed}")
  for key in ("n_classes", "vocab_size"):
    value = config.get("model", {}).get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or value < 1):
      raise ConfigError(f"config.model.{key} must be an integer >= 1, got {value!r}")


def resolve_config(config: Any) -> ml_collections.ConfigDict:
  """`config` merged over `default_config.get_config()`, after checking it.

  Raises `ConfigError` for an unknown key in a fixed section (or a misspelt section), a missing
  required key, or a count (steps, batch size, intervals) that is not an integer in range.
  """
  user = to_dict(config)
  if not isinstance(user, Mapping):
    raise ConfigError(f"a config is a ConfigDict with sections {sorted(DEFAULTS)}, got "
                      f"{type(config).__name__}")
  _check_keys(user)
  merged = {**DEFAULTS, **user}
  for section in SECTIONS:
    merged[section] = {**DEFAULTS[section], **user.get(section, {})}
  _check_values(merged)
  _check_meaning(merged)
  return ml_collections.ConfigDict(merged)


def validate_config(config: Any) -> None:
  """Raises `ConfigError` where `resolve_config` would (see there)."""
  resolve_config(config)
