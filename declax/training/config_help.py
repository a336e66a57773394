"""The config tree as text: every key, its value, its default and its help (`--show_config`).

The help of a key is its comment in `declax/training/default_config.py`, the one place where
keys and defaults are written, so the printed help cannot drift from the defaults.

```python
from declax.training import config_help, default_config
print(config_help.show_config(default_config.get_config()))
```
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from declax.training import default_config
from declax.training.config_schema import to_dict

__all__ = ["key_help", "show_config"]

_SECTION = re.compile(r"^\s*config\.(\w+)\s*=\s*dict\((.*)$")
_KEY = re.compile(r"^\s+(\w+)\s*=.*#\s*(.+)$")


def key_help() -> dict[str, str]:
  """`{'data.eval_split': 'None: no evaluation', 'model': 'Registry name ...', ...}`."""
  helps: dict[str, str] = {}
  section, pending = None, []
  for line in inspect.getsource(default_config).splitlines():
    stripped = line.strip()
    if stripped.startswith("#"):
      pending.append(stripped.lstrip("# "))
      continue
    match = _SECTION.match(line)
    if match:
      section = match.group(1)
      trailing = match.group(2).split("#", 1)
      comment = trailing[1].strip() if len(trailing) > 1 else " ".join(pending)
      if comment:
        helps[section] = comment
    elif section is not None and (key := _KEY.match(line)):
      helps[f"{section}.{key.group(1)}"] = key.group(2).strip()
    pending = []
  return helps


def _rows(values: Mapping, defaults: Mapping, prefix: str, depth: int) -> list[tuple[str, str]]:
  rows = []
  for key, value in values.items():
    name = f"{prefix}{key}"
    default = defaults.get(key) if isinstance(defaults, Mapping) else None
    if isinstance(value, Mapping):
      rows.append(("  " * depth + f"{key}:", name))
      rows.extend(_rows(value, default if isinstance(default, Mapping) else {}, f"{name}.",
                        depth + 1))
      continue
    text = "  " * depth + f"{key} = {value!r}"
    if name in default_config.REQUIRED and value is None:
      text += "   (required)"
    elif isinstance(defaults, Mapping) and key in defaults and default != value:
      text += f"   (default {default!r})"
    rows.append((text, name))
  return rows


def show_config(config: Any, source: str = "") -> str:
  """The config tree with each key's value, its default where it differs, and its help."""
  helps = key_help()
  rows = _rows(to_dict(config), to_dict(default_config.get_config()), "", 0)
  width = min(max(len(text) for text, _ in rows) + 2, 60)
  title = f"Config{f' of {source}' if source else ''} (override any key with --config.KEY=VALUE)"
  lines = [title]
  for text, name in rows:
    help_text = helps.get(name)
    lines.append(f"{text:<{width}} # {help_text}" if help_text else text)
  return "\n".join(lines)
