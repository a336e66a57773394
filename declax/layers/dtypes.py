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


def promote(*args: Any) -> list:
  """`args` cast to their common dtype under JAX's standard rules (ints stay ints, bfloat16
  with float32 gives float32): Trax's element-wise layers rely on that promotion.

  ```python
  promote(jnp.ones(2, jnp.bfloat16), jnp.ones(2))   # both float32
  ```
  """
  with jax.numpy_dtype_promotion("standard"):
    dtype = jnp.result_type(*args)
  return [jnp.asarray(a, dtype) for a in args]


def at_least_float32(x: Any) -> Any:
  """The dtype of `x` promoted to at least float32: bfloat16 and ints -> float32."""
  with jax.numpy_dtype_promotion("standard"):
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


# ---- The mixed-precision policy behind `config.dtype` --------------------------------------------

# `config.dtype` values: the compute dtype of every layer. Parameters stay float32 whatever it
# is; models cast their logits back to float32 and losses compute in float32.
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def as_float32(x: jax.Array) -> jax.Array:
  """`x` cast to float32 (a model's logits under a bfloat16 policy).

  ```python
  as_float32(jnp.ones(3, jnp.bfloat16)).dtype   # float32
  ```
  """
  return x.astype(jnp.float32)
