"""A model for tabular data: learned embeddings of categorical columns, concatenated with the
numeric columns, into an MLP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

import declax.layers as tl
from declax.models.blocks import compute_dtype

__all__ = ["MultiEmbeddingModel"]


def MultiEmbeddingModel(cardinalities: Sequence[int], d_feature: int,  # noqa: N802
                        n_numeric: int = 0, hidden: Sequence[int] = (64,),
                        n_outputs: int = 1, activation: Callable[[], tl.Layer] | str = tl.Relu,
                        dropout: float = 0.0, output_layer: Callable[[], tl.Layer] | str | None
                        = None, mode: str = "train", dtype: Any = None) -> tl.Serial:
  """Categorical + numeric columns -> `(batch, n_outputs)`.

  `Parallel(Embedding(c_0, d_feature), ..., Embedding(c_k, d_feature)[, numeric]) ->
  Concatenate -> (Dense, activation, Dropout) per hidden width -> Dense(n_outputs)
  [-> output_layer]`.

  **Inputs** (in this order on the stack): one int array `(batch,)` per categorical column
  (column `i` takes ids in `[0, cardinalities[i])`), then, when `n_numeric > 0`, one float
  array `(batch, n_numeric)`. So `n_in == len(cardinalities) + (n_numeric > 0)`.

  **Returns** `(batch, n_outputs)`: raw values by default (regression with `tl.L2Loss`, or
  logits for `tl.WeightedCategoryCrossEntropy` / `tl.BinaryCrossEntropyLoss`); pass
  `output_layer='LogSoftmax'` for log-probabilities.

  ```python
  model = MultiEmbeddingModel([7, 3], d_feature=4, n_numeric=2, hidden=(16,), n_outputs=1)
  x = (jnp.array([1, 6]), jnp.array([0, 2]), jnp.ones((2, 2)))
  variables = model.init(jax.random.key(0), x)
  model.apply(variables, x).shape    # (2, 1)
  ```
  """
  cardinalities = tuple(int(c) for c in cardinalities)
  if not cardinalities and n_numeric <= 0:
    raise ValueError("MultiEmbeddingModel needs at least one categorical or numeric column")
  if any(c < 1 for c in cardinalities):
    raise ValueError(f"cardinalities must be positive, got {cardinalities}")
  dtype = compute_dtype(dtype)
  if isinstance(activation, str):
    activation = getattr(tl, activation)
  if isinstance(output_layer, str):
    output_layer = getattr(tl, output_layer)
  columns = [tl.Embedding(c, d_feature, dtype=dtype) for c in cardinalities]
  if n_numeric > 0:  # the numeric columns pass through, in the compute dtype
    numeric_dtype = dtype or jnp.float32
    columns.append(tl.Fn("ToFloat", lambda x: jnp.asarray(x, numeric_dtype)))
  inputs = tl.Parallel(*columns) if len(columns) > 1 else columns[0]
  mlp = [[tl.Dense(width, dtype=dtype), activation(), tl.Dropout(dropout, mode=mode)]
         for width in hidden]
  return tl.Serial(
      inputs,
      tl.Concatenate(n_items=len(columns)) if len(columns) > 1 else None,
      mlp,
      tl.Dense(n_outputs, kernel_axes=("mlp" if hidden else "embed", None), bias_axes=(None,),
               dtype=jnp.float32),  # a small head: float32 outputs whatever the compute dtype
      output_layer() if output_layer is not None else None,
  )
