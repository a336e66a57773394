"""What a training config may contain, checked before anything is built.

A misspelt key in a config file is otherwise silently ignored (`config.train.eval_evry = 50`
leaves evaluation at its default), and a missing one fails deep inside the build with a bare
`KeyError`. `validate_config` names the key, the closest known key and the section's keys.

Sections `data`, `optimizer`, `schedule` and `train` have a fixed set of keys; `model` holds the
model's own keyword arguments (checked by the model's signature when it is built); `mesh` and
`sharding_rules` are checked by `declax.sharding`; other top-level sections (e.g. `sample`) are
left to the scripts that read them.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = ["ConfigError", "SECTIONS", "validate_config"]


class ConfigError(ValueError):
  """A config key that is unknown, missing or has an unusable value; names the key."""


# section -> (required keys, optional keys)
SECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "model": (("name",), ()),
    "data": (("name",), ("train_split", "eval_split", "eval_batch_size", "n_eval_batches",
                         "builder_kwargs", "normalize", "lm_format", "data_dir", "in_memory")),
    "optimizer": (("name",), ("weight_decay", "decay_all", "clip_norm", "grad_accum_steps",
                              "kwargs")),
    "schedule": (("learning_rate",), ("name", "warmup_steps", "decay_steps", "end_value")),
    "train": (("steps", "batch_size", "seed", "loss"),
              ("eval_every", "checkpoint_every", "log_every", "keep_checkpoints", "metrics",
               "metric_names")),
}

# key -> (smallest allowed value, None allowed)
_INTEGERS = {
    "train.steps": (0, False), "train.batch_size": (1, False), "train.seed": (0, False),
    "train.eval_every": (1, True), "train.checkpoint_every": (1, True),
    "train.log_every": (1, False), "train.keep_checkpoints": (1, True),
    "data.eval_batch_size": (1, True), "data.n_eval_batches": (1, True),
    "optimizer.grad_accum_steps": (1, True), "schedule.warmup_steps": (0, True),
    "schedule.decay_steps": (1, True),
}


def _as_dict(value: Any) -> Any:
  to_dict = getattr(value, "to_dict", None)
  return to_dict() if callable(to_dict) else value


def _unknown_key(section: str, key: str, known: tuple[str, ...]) -> ConfigError:
  close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
  hint = f"; did you mean config.{section}.{close[0]}?" if close else ""
  return ConfigError(f"config.{section}.{key} is not a known key{hint} (config.{section} "
                     f"takes: {', '.join(sorted(known))})")


def validate_config(config: Any) -> None:
  """Raises `ConfigError` for a missing section or key, an unknown key in a fixed section, or
  a count (steps, batch size, intervals) that is not an integer in range."""
  config = _as_dict(config)
  if not isinstance(config, Mapping):
    raise ConfigError(f"a config is a ConfigDict with sections {sorted(SECTIONS)}, got "
                      f"{type(config).__name__}")
  for section, (required, optional) in SECTIONS.items():
    if section not in config:
      close = difflib.get_close_matches(section, list(config), n=1, cutoff=0.6)
      hint = f" (config.{close[0]} looks misspelt)" if close else ""
      raise ConfigError(f"config.{section} is missing{hint}; every config needs the sections "
                        f"{', '.join(SECTIONS)}")
    values = _as_dict(config[section])
    if not isinstance(values, Mapping):
      raise ConfigError(f"config.{section} must be a dict of settings, got "
                        f"{type(values).__name__}")
    for key in required:
      if values.get(key) is None:
        raise ConfigError(f"config.{section}.{key} is missing (required)")
    if section == "model":  # the model's own arguments
      continue
    for key in values:
      if key not in required + optional:
        raise _unknown_key(section, key, required + optional)
  for path, (low, none_ok) in _INTEGERS.items():
    section, key = path.split(".")
    value = _as_dict(config[section]).get(key)
    if value is None and (none_ok or key not in _as_dict(config[section])):
      continue
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
      allowed = f"an integer >= {low}" + (" or None" if none_ok else "")
      raise ConfigError(f"config.{path} must be {allowed}, got {value!r}")
