"""Dtype promotion inside layers.

Layers mix dtypes on purpose (bfloat16 activations with float32 parameters, statistics in at
least float32). They promote with JAX's standard rules explicitly, so they also run where implicit
promotion is an error (`jax_numpy_dtype_promotion='strict'`, as in declax's tests).

```python
x, kernel = promote_dtype(x_bf16, kernel_f32)   # both float32 (dtype=None)
```
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def promote_dtype(*args: Any, dtype: Any = None) -> list:
  """`flax.linen.dtypes.promote_dtype` under JAX's standard promotion rules."""
  with jax.numpy_dtype_promotion("standard"):
    return nn.dtypes.promote_dtype(*args, dtype=dtype)


def result_dtype(*args: Any, dtype: Any = None) -> Any:
  """The dtype `promote_dtype` casts to (`flax.linen.dtypes.canonicalize_dtype`)."""
  with jax.numpy_dtype_promotion("standard"):
    return nn.dtypes.canonicalize_dtype(*args, dtype=dtype)


def at_least_float32(x: Any) -> Any:
  """The dtype of `x` promoted to at least float32: bfloat16 and ints -> float32."""
  with jax.numpy_dtype_promotion("standard"):
    return jnp.promote_types(jnp.result_type(x), jnp.float32)
