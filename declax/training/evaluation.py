"""Running `EvalTask`s: batch-weighted metrics merged over each task's batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from declax import sharding
from declax.errors import did_you_mean
from declax.training.config_schema import ConfigError
from declax.training.tasks import EvalTask

__all__ = ["check_metric_name", "run_eval_tasks"]


def run_eval_tasks(tasks: Sequence[EvalTask], eval_steps: Sequence[Any], state: Any,
                   mesh: jax.sharding.Mesh, rules: Sequence[tuple]) -> dict[str, float]:
  """`{'eval/name': value}` of every task, each one's jitted `eval_step` run over its batches
  and the clu `Collection`s merged on the host.

  ```python
  results = run_eval_tasks(loop.eval_tasks, loop._eval_steps, loop.state, loop.mesh, loop.rules)
  ```
  """
  results: dict[str, float] = {}
  with sharding.mesh_context(mesh, rules):
    for task, eval_step in zip(tasks, eval_steps, strict=True):
      outputs = [eval_step(state, sharding.shard_batch(b, mesh)) for b in task.batches()]
      if not outputs:
        raise ConfigError("EvalTask produced no batches")
      fetched = jax.device_get(outputs)
      merged = fetched[0]
      for other in fetched[1:]:
        merged = merged.merge(other)
      for name, value in merged.compute().items():
        results[f"{task.export_prefix}/{name}"] = float(np.asarray(value))
  return results


def check_metric_name(name: str, results: Mapping[str, float]) -> None:
  """`ConfigError` (with a did-you-mean) unless `name` is one of the evaluation `results`."""
  if name not in results:
    raise ConfigError(f"no evaluation metric {name!r} (the evaluations give "
                      f"{', '.join(sorted(results))}){did_you_mean(name, results)}")
