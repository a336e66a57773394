"""`LayerError`: a failure inside a layer, named by its path in the model, its creation site and
what it received; `LayerArgumentError`: a layer constructed with arguments it cannot work with.

```python
try:
  model.apply(variables, x)
except LayerError as error:
  print(error.path)          # e.g. 'Serial[2] > Dense_4'
```
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence

import flax.linen as nn

from declax.errors import DeclaxError

_SKIPPED_DIRS = (os.path.dirname(os.path.dirname(nn.__file__)), os.path.dirname(__file__),
                 os.path.dirname(dataclasses.__file__))


@dataclasses.dataclass(frozen=True)
class Origin:
  """Where a layer was created (the first frame outside declax.layers and flax)."""

  location: str
  user_name: str | None = None


def caller_location() -> str:
  """`file:line` of the first caller outside declax.layers, flax and dataclasses."""
  frame = sys._getframe(2)
  while frame is not None:
    filename = frame.f_code.co_filename
    # Subclasses that extend __post_init__ are part of the construction, not its call site.
    if (not filename.startswith(_SKIPPED_DIRS) and not filename.startswith("<")
        and frame.f_code.co_name != "__post_init__"):
      where = os.path.relpath(filename) if filename.startswith(os.getcwd()) else filename
      return f"{where}:{frame.f_lineno}"
    frame = frame.f_back
  return "<unknown>"


@dataclasses.dataclass(frozen=True)
class Frame:
  """One level of a `LayerError`: a layer, where it was created and what it received."""

  label: str  # e.g. 'Serial[2]' (position of the child that failed) or 'Dense_4' at the leaf
  header: str
  location: str
  received: str


class LayerError(DeclaxError, ValueError):
  """A failure inside a layer, chained from the outermost layer down to the one that failed.

  The message starts with the path (`Serial[2] > Branch[1] > Dense_4`) and the original error,
  then lists each level with the file:line where it was created and the stack it received. The
  original exception is `__cause__` (and `.cause`).
  """

  def __init__(self, frames: Sequence[Frame], cause: BaseException):
    self.frames = tuple(frames)
    self.cause = cause
    super().__init__(self._message())

  @property
  def path(self) -> str:
    return " > ".join(f.label for f in self.frames)

  def _message(self) -> str:
    width = max(len(f.header) for f in self.frames)
    lines = [f"{self.path}: {type(self.cause).__name__}: {self.cause}"]
    for f in self.frames:
      lines.append(f"  {f.header:<{width}}  created at {f.location}, received {f.received}")
    return "\n".join(lines)

  def __reduce__(self):
    return (LayerError, (self.frames, self.cause))


class LayerArgumentError(DeclaxError, ValueError):
  """A layer's constructor arguments (or a custom backward pass's results) are unusable; the
  message names the layer, the argument and what it must be
  (`LocallyConnected1d: kernel_size must be odd, got 2`)."""
