"""Running `EvalTask`s: batch-weighted metrics merged over each task's batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from declax import sharding
from declax.errors import did_you_mean
from declax.training.config_schema import ConfigError
from declax.training.id_checks import IdChecks, IdRangeError
from declax.training.tasks import EvalTask

__all__ = ["check_metric_name", "run_eval_tasks"]


def run_eval_tasks(tasks: Sequence[EvalTask], eval_steps: Sequence[Any], state: Any,
                   mesh: jax.sharding.Mesh, rules: Sequence[tuple],
                   id_checks: Sequence[IdChecks | None] | None = None) -> dict[str, float]:
  """`{'eval/name': value}` of every task, each one's jitted `eval_step` run over its batches
  and the clu `Collection`s merged on the host. Steps made with `id_checks` also return an
  `IdCheck`: an out-of-range label or token id raises `IdRangeError` naming the batch.

  ```python
  results = run_eval_tasks(loop.eval_tasks, loop._eval_steps, loop.state, loop.mesh, loop.rules)
  ```
  """
  results: dict[str, float] = {}
  with sharding.mesh_context(mesh, rules):
    for index, (task, eval_step) in enumerate(zip(tasks, eval_steps, strict=True)):
      outputs = [eval_step(state, sharding.shard_batch(b, mesh)) for b in task.batches()]
      if not outputs:
        raise ConfigError("EvalTask produced no batches")
      fetched = jax.device_get(outputs)
      if isinstance(fetched[0], tuple):  # (metrics, IdCheck) per batch
        checks = (id_checks or [None] * len(tasks))[index]
        _raise_on_bad_ids([ids for _, ids in fetched], checks, task.export_prefix)
        fetched = [metrics for metrics, _ in fetched]
      merged = fetched[0]
      for other in fetched[1:]:
        merged = merged.merge(other)
      for name, value in merged.compute().items():
        results[f"{task.export_prefix}/{name}"] = float(np.asarray(value))
  return results


def _raise_on_bad_ids(found: Sequence[Any], checks: IdChecks | None, prefix: str) -> None:
  for number, ids in enumerate(found, 1):
    if int(ids.step) >= 0:
      sites = checks.sites if checks is not None else []
      site = sites[int(ids.check)] if int(ids.check) < len(sites) else None
      if site is not None:
        raise IdRangeError("eval", f"batch {number} of eval task '{prefix}'", site,
                           int(ids.value), int(ids.limit))


def check_metric_name(name: str, results: Mapping[str, float]) -> None:
  """`ConfigError` (with a did-you-mean) unless `name` is one of the evaluation `results`."""
  if name not in results:
    raise ConfigError(f"no evaluation metric {name!r} (the evaluations give "
                      f"{', '.join(sorted(results))}){did_you_mean(name, results)}")
