"""Logical axis names on parameters and activations (resolved to a mesh by `declax.sharding`).

```python
kernel = self.param('kernel', param_init(init, ('embed', 'mlp')), shape)
y = constrain(y, ('batch', 'length', 'embed'))
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax


def param_init(initializer: Callable, axes: Sequence[str | None] | None) -> Callable:
  """An initializer that carries logical axis names (or a plain one when `axes` is None)."""
  if axes is None:
    return initializer
  return nn.with_logical_partitioning(initializer, tuple(axes))


def constrain(x: jax.Array, axes: Sequence[str | None] | None) -> jax.Array:
  """Logical sharding constraint on an activation (a no-op outside a mesh and axis rules)."""
  if axes is None:
    return x
  return nn.with_logical_constraint(x, tuple(axes))
