"""`LayerArgumentError`: a layer constructed with arguments it cannot work with.

```python
try:
  tl.LocallyConnected1d(6, 2)
except declax.DeclaxError as error:
  print(error)   # LocallyConnected1d: kernel_size must be odd, got 2
```
"""

from __future__ import annotations

from declax.errors import DeclaxError


class LayerArgumentError(DeclaxError, ValueError):
  """A layer's constructor arguments (or a custom backward pass's results) are unusable; the
  message names the layer, the argument and what it must be."""


__all__ = ["LayerArgumentError"]
