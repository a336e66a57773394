"""Logical axis names on parameters and activations (resolved to a mesh by `declax.sharding`).

Parameters carry their logical axis names (as Linen's `Partitioned` boxes) only when they are
initialised under logical axis rules, as the `Loop` and `declax.sharding.mesh_context` do;
anywhere else `model.init` returns plain arrays, so research code needs no `nn.unbox`.

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
  """An initializer that carries logical axis names under logical axis rules, else a plain one.

  The choice is made when the parameter is created (inside `init`), so the same model gives
  plain arrays outside a mesh and boxed, shardable ones under `declax.sharding.mesh_context`.
  """
  if axes is None or not nn.get_logical_axis_rules():
    return initializer
  return nn.with_logical_partitioning(initializer, tuple(axes))


def constrain(x: jax.Array, axes: Sequence[str | None] | None) -> jax.Array:
  """Logical sharding constraint on an activation (a no-op outside a mesh and axis rules)."""
  if axes is None:
    return x
  return nn.with_logical_constraint(x, tuple(axes))
