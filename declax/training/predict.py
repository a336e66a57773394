"""Predictions on new inputs: from a model and its variables, a trained `Loop`, or a workdir.

The model runs in `'eval'` mode (dropout off, BatchNorm on its running statistics) under one
`jax.jit`; inputs are what the model takes (one array, or a tuple for a model with `n_in > 1`).

```python
outputs = loop.predict(x)                                    # right after training
outputs = predict_from_workdir('/tmp/declax/digits_mlp', x)  # later, from the checkpoint
predict_fn = predictor_from_workdir('/tmp/declax/digits_mlp')
predict_fn(x1), predict_fn(x2)                               # restore once, call many times
```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax

from declax.layers import with_mode

__all__ = ["predict", "predict_from_workdir", "predictor", "predictor_from_workdir"]


def predictor(model: nn.Module, variables: Mapping) -> Callable[[Any], Any]:
  """`fn(inputs) -> outputs`: `model` in `'eval'` mode with `variables`, jitted once.

  ```python
  fn = predictor(tl.Serial(tl.Dense(2)), variables)
  fn(jnp.ones((4, 3))).shape     # (4, 2)
  ```
  """
  eval_model = with_mode(model, "eval")
  variables = nn.unbox(dict(variables))
  apply = jax.jit(eval_model.apply)
  return lambda inputs: apply(variables, tuple(inputs) if isinstance(inputs, list) else inputs)


def predict(model: nn.Module, variables: Mapping, inputs: Any) -> Any:
  """The outputs of `model` (in `'eval'` mode) on `inputs`; see `predictor` to call it often."""
  return predictor(model, variables)(inputs)


def predictor_from_workdir(workdir: str | os.PathLike,
                           step: int | None = None) -> Callable[[Any], Any]:
  """`fn(inputs) -> outputs` of the model a training run left in `workdir` (newest checkpoint,
  or `step`)."""
  from declax.training.from_config import restore_from_workdir

  model, variables, _, _ = restore_from_workdir(workdir, step, mode="eval")
  return predictor(model, variables)


def predict_from_workdir(workdir: str | os.PathLike, inputs: Any, step: int | None = None) -> Any:
  """The outputs on `inputs` of the model a training run left in `workdir`."""
  return predictor_from_workdir(workdir, step)(inputs)
