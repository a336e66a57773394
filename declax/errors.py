"""The one root of every error declax raises on bad input, and the one did-you-mean helper.

Each declax error also derives from the builtin it has always been (`ConfigError` is a
`ValueError`, `WorkdirError` an `OSError`, ...), so existing `except` clauses keep working, while
`except declax.DeclaxError` catches all of them and the CLI recognises them by type.

```python
try:
  ...
except declax.DeclaxError as error:
  print(f'declax-train: error: {error}')
```
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeclaxError(Exception):
  """Base of every error declax raises on bad input (the message names the cause and the fix)."""


def did_you_mean(name: str, known: Iterable[str], *, prefix: str = "", cutoff: float = 0.6) -> str:
  """`'; did you mean {prefix}{closest}?'` when `name` is close to one of `known`, else `''`.

  ```python
  did_you_mean('lerning_rate', ['learning_rate', 'steps'])   # "; did you mean learning_rate?"
  ```
  """
  close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
  return f"; did you mean {prefix}{close[0]}?" if close else ""
