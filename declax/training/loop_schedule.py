"""When a `Loop` does what: which task trains at a step, when it evaluates and checkpoints, and
the order of the end of a run (a failing evaluation never costs the trained steps).

```python
schedule = LoopSchedule.create(tasks, eval_every=50)   # Trax's defaults, from the tasks
schedule.task_index(7)          # step % len(tasks), or which_task(step)
schedule.saves_at(100, evaluated=False)   # task 0's n_steps_per_checkpoint, permanent ones
```
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import jax

from declax.training.callbacks import at_every
from declax.training.checkpoints import Checkpointer
from declax.training.config_schema import ConfigError

__all__ = ["LoopSchedule", "best_metric", "evaluate_and_save", "finish_saves",
           "preemption_reached", "ranking_metrics"]

log = logging.getLogger(__name__)


def best_metric(low: str | None, high: str | None) -> tuple[str, str] | None:
  """`(metric, 'min' | 'max')` of `checkpoint_low_metric` / `checkpoint_high_metric` (a bare
  name such as Trax's `'loss'` is the evaluation's `'eval/loss'`), or None."""
  if low is not None and high is not None:
    raise ConfigError("pass checkpoint_low_metric or checkpoint_high_metric, not both")
  name, mode = (low, "min") if low is not None else (high, "max")
  if name is None:
    return None
  return (name if "/" in name else f"eval/{name}"), mode


@dataclasses.dataclass(frozen=True)
class LoopSchedule:
  """The `Loop`'s step predicates (Trax's names): `checkpoint_at`, `permanent_at`
  (checkpoints never deleted), `eval_at`, `which_task` over `n_tasks` tasks, and `best`:
  `(metric, 'min' | 'max')` whose best checkpoint is kept (every evaluation is saved), or None.
  """

  checkpoint_at: Callable[[int], bool]
  permanent_at: Callable[[int], bool]
  eval_at: Callable[[int], bool]
  which_task: Callable[[int], int]
  n_tasks: int
  best: tuple[str, str] | None

  @classmethod
  def create(cls, tasks: Sequence[Any], *, checkpoint_at: Callable[[int], bool] | None = None,
             permanent_checkpoint_at: Callable[[int], bool] | None = None,
             eval_at: Callable[[int], bool] | None = None, eval_every: int | None = None,
             which_task: Callable[[int], int] | None = None,
             checkpoint_low_metric: str | None = None,
             checkpoint_high_metric: str | None = None) -> LoopSchedule:
    """The `Loop`'s arguments, defaulted from task 0: checkpoints every
    `n_steps_per_checkpoint`, permanent ones every `n_steps_per_permanent_checkpoint`,
    evaluations every `eval_every` (else the checkpoint interval, else 100), tasks in turn."""
    every = tasks[0].n_steps_per_checkpoint
    n_tasks = len(tasks)
    return cls(checkpoint_at=checkpoint_at or at_every(every),
               permanent_at=permanent_checkpoint_at or at_every(
                   tasks[0].n_steps_per_permanent_checkpoint),
               eval_at=eval_at or at_every(eval_every or every or 100),
               which_task=which_task or (lambda step: step % n_tasks), n_tasks=n_tasks,
               best=best_metric(checkpoint_low_metric, checkpoint_high_metric))

  def task_index(self, step: int) -> int:
    """The task that trains at `step`; `ConfigError` if `which_task` names none."""
    index = self.which_task(step)
    if not 0 <= index < self.n_tasks:
      raise ConfigError(f"which_task({step}) returned {index}; there are {self.n_tasks} tasks")
    return int(index)

  def saves_at(self, step: int, evaluated: bool) -> bool:
    """Whether `step` is saved (before the last step of a run, which always is)."""
    return bool(self.checkpoint_at(step) or self.permanent_at(step)
                or evaluated and self.best)


def evaluate_and_save(save: Callable[..., None], evaluate: Callable[[], Any],
                      checkpointer: Checkpointer | None, evaluate_now: bool,
                      ranked: bool) -> None:
  """The end of a run: the checkpoint is written first (`save()`), then the evaluation runs
  while it is written, except with a ranked checkpoint (`checkpoint_*_metric`, `ranked`),
  which this evaluation ranks: then it is written after, or without metrics if the evaluation
  fails. Without an evaluation due, the checkpoint is written and waited for."""
  if not evaluate_now:
    save(wait=True)
    return
  if not ranked:
    save()
    evaluate()
    if checkpointer is not None:
      checkpointer.wait_until_finished()  # (a failed save raises here)
    return
  try:
    evaluate()
  except BaseException:
    save(wait=True)
    raise
  save(wait=True)


def ranking_metrics(eval_history: Sequence[tuple[int, dict[str, float]]],
                    best: tuple[str, str] | None, step: int) -> dict[str, float] | None:
  """The evaluation results that rank the checkpoint of `step` (`checkpoint_*_metric`): those
  of an evaluation at that step, else None."""
  if eval_history and best and eval_history[-1][0] == step:
    return eval_history[-1][1]
  return None


def preemption_reached(checkpointer: Checkpointer | None, step: int) -> bool:
  """Whether a multi-host run reached JAX's preemption sync point at `step` (every process
  stops and saves at the same step)."""
  if checkpointer is not None and jax.process_count() > 1:
    return checkpointer.reached_preemption(step)
  return False


def finish_saves(checkpointer: Checkpointer | None) -> None:
  """Waits for pending saves before an error propagates; a failed save is logged, as the
  original error is the one to report."""
  if checkpointer is None:
    return
  try:
    checkpointer.wait_until_finished()
  except Exception as error:  # noqa: BLE001 - the original error is the one to report
    log.error("A pending checkpoint save failed while stopping: %s", error)
