"""Per-array digests of a train state, stored with each checkpoint and checked on restore.

Orbax checksums nothing in the array bytes: a flipped bit on disk restores silently (a low bit
as a slightly different weight, a high bit as NaN that is then blamed on training). Each array's
bits are reduced on the device to two 32-bit sums (plain, and weighted by position, so a
swapped pair is seen too); a single flipped bit always changes the first. The reduction runs
where the arrays are (sharded, on every process), costing one pass over the state per save
and per restore; `Loop(checkpoint_digests=False)` turns it off for huge states.

```python
digests = array_digests({'w': jnp.ones(3)})        # {'w': [a, b]}
mismatched(digests, array_digests({'w': jnp.ones(3)}))   # []
```
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from declax.training.state import path_name

__all__ = ["array_digests", "mismatched"]

_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


def _digest(x: jax.Array) -> jax.Array:
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  else:  # 8-byte values become pairs of uint32 (a trailing axis of 2)
    bits = jax.lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize]).astype(jnp.uint32)
  bits = bits.reshape(-1)
  weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
  return jnp.stack([jnp.sum(bits, dtype=jnp.uint32),
                    jnp.sum(bits * weights, dtype=jnp.uint32)])


@jax.jit
def _all_digests(leaves: list[jax.Array]) -> list[jax.Array]:
  return [_digest(x) for x in leaves]


def array_digests(tree: Any) -> dict[str, list[int]]:
  """`{path: [sum, weighted sum]}` of every array leaf's bits (JSON-serialisable)."""
  flat = [(path_name(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
          if hasattr(x, "dtype") and hasattr(x, "shape")]
  if not flat:
    return {}
  values = jax.device_get(_all_digests([jnp.asarray(x) for _, x in flat]))
  return {name: [int(v) for v in np.asarray(d)] for (name, _), d in zip(flat, values,
                                                                         strict=True)}


def mismatched(stored: dict[str, list[int]], actual: dict[str, list[int]]) -> list[str]:
  """The paths in both whose digests differ."""
  return sorted(p for p in stored.keys() & actual.keys() if list(stored[p]) != actual[p])
