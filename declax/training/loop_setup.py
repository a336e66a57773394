"""Building a `Loop`: its output directory, the shapes of its batches, its compiled steps and the
data positions it resumes from. Functions of the Loop's arguments, called by `Loop.__init__`.

```python
out = open_output_dir(loop, '/tmp/run', keep_checkpoints=3, async_checkpoints=True,
                      permanent_at=never, best=None, digests=True)
start = start_state(model, tasks, batch_specs, mesh, rules, seed, out.checkpointer, None)
steps = compile_steps(model, eval_model, tasks, eval_tasks, mesh, state_shardings, options)
```
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh

from declax import sharding
from declax.training.checkpoints import Checkpointer
from declax.training.config_schema import ConfigError
from declax.training.evaluation import check_metric_name
from declax.training.guards import check_eval_setup, check_labels, claim_workdir
from declax.training.id_checks import IdChecks
from declax.training.loop_data import local_position
from declax.training.loop_options import LoopOptions
from declax.training.state import Head, create_or_restore_state
from declax.training.step import make_eval_step, make_train_step, with_running_metrics
from declax.training.tasks import EvalTask, TrainTask
from declax.training.workdir import check_writable, lock_workdir

__all__ = ["CompiledSteps", "OutputDir", "check_before_training", "compile_steps", "data_key",
           "global_specs", "open_output_dir", "resume_data", "start_state"]

log = logging.getLogger(__name__)


class OutputDir(NamedTuple):
  """An opened output directory: its absolute `path` (None: none), its `checkpointer`, the
  workdir `lock` (process 0) and `release_claim` (this process's one-live-Loop claim)."""

  path: str | None
  checkpointer: Checkpointer | None
  lock: Any
  release_claim: Callable[[], None] | None


def open_output_dir(owner: Any, output_dir: str | os.PathLike | None,
                    keep_checkpoints: int | None, async_checkpoints: bool,
                    permanent_at: Callable[[int], bool] | None,
                    best: tuple[str, str] | None, digests: bool) -> OutputDir:
  """Locks the output directory (before anything writes there) and opens its checkpoints. The
  lock and the claim are released when `owner` (the Loop) is collected, also if its
  `__init__` fails later."""
  path = os.path.abspath(os.fspath(output_dir)) if output_dir is not None else None
  if path is None:
    return OutputDir(None, None, None, None)
  release_claim = claim_workdir(path, owner)  # one live Loop per dir
  weakref.finalize(owner, release_claim)
  lock = None
  if jax.process_index() == 0:
    lock = lock_workdir(path)
    weakref.finalize(owner, lock.release)
  else:
    check_writable(path)
  metric, mode = best or (None, "min")
  checkpointer = Checkpointer(os.path.join(path, "checkpoints"), max_to_keep=keep_checkpoints,
                              async_save=async_checkpoints, best_metric=metric, best_mode=mode,
                              permanent=permanent_at, digests=digests)
  return OutputDir(path, checkpointer, lock, release_claim)


def global_specs(task: TrainTask) -> tuple[jax.ShapeDtypeStruct, ...]:
  """The shapes of the task's global batch (every process's local batch, stacked)."""
  n_proc = jax.process_count()
  return tuple(jax.ShapeDtypeStruct((x.shape[0] * n_proc, *x.shape[1:]), x.dtype)
               for x in map(np.asarray, task.sample_batch))


def start_state(model: nn.Module, tasks: Sequence[TrainTask],
                batch_specs: Sequence[tuple[jax.ShapeDtypeStruct, ...]], mesh: Mesh, rules: Any,
                seed: int, checkpointer: Checkpointer | None,
                init_params: Callable[[Any], Any] | None) -> Any:
  """The train state, fresh or restored from `checkpointer`'s last checkpoint; with several
  tasks, one head (the loss layer's parameters) and one optimizer state per task."""
  multi = len(tasks) > 1
  heads = ([Head(t.loss_layer, specs) for t, specs in zip(tasks, batch_specs, strict=True)]
           if multi else None)
  optimizer = [t.optimizer for t in tasks] if multi else tasks[0].optimizer
  return create_or_restore_state(model, optimizer, batch_specs[0][: model.n_in], mesh, rules,
                                 seed=seed, checkpointer=checkpointer, heads=heads,
                                 init_params=init_params)


def data_key(index: int) -> str:
  """The name of task `index`'s data position in a checkpoint."""
  return "train" if index == 0 else f"train_{index}"


def resume_data(tasks: Sequence[TrainTask], step: int, data_state: dict, directory: str,
                multi: bool) -> None:
  """Sets every task's data iterator to its position in checkpoint `step` (`data_state`)."""
  for i, task in enumerate(tasks):
    if data_key(i) not in data_state and task.data_checkpointable:
      log.warning("checkpoint step %d in %s holds no data position for task %d (its 'data' "
                  "item is missing): its training data restarts from the first batch. "
                  "Restore the item from a copy to resume the data exactly", step, directory, i)
    try:
      task.set_data_state(local_position(data_state.get(data_key(i))))
    except (ValueError, TypeError, KeyError) as error:
      raise ConfigError(
          f"cannot resume the training data{f' of task {i}' if multi else ''} at "
          f"checkpoint step {step} "
          f"({directory}): {str(error).rstrip('.')}. The data settings "
          "(dataset, batch size, seed, number of processes) must be those of the run that "
          "saved it."
      ) from error
  log.info("Resumed from %s at step %d", directory, step)


class CompiledSteps(NamedTuple):
  """The jitted `train` steps (one per task) and `eval` steps (one per eval task), with the
  `IdChecks` naming what their in-step id checks find (None: checks off)."""

  train: list
  eval: list
  id_checks: list[IdChecks | None]
  eval_id_checks: list[IdChecks | None]


def compile_steps(model: nn.Module, eval_model: nn.Module, tasks: Sequence[TrainTask],
                  eval_tasks: Sequence[EvalTask], mesh: Mesh, state_shardings: Any,
                  options: LoopOptions) -> CompiledSteps:
  """One `jax.jit` per task's step: sharded in and out, donating the state and the running
  metrics, which it returns merged with the step's (constant memory, no fetch per step)."""
  batch_sh, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  multi = len(tasks) > 1
  checks = options.check_ids  # labels and token ids in range, on every batch
  id_checks = [IdChecks() if checks else None for _ in tasks]
  eval_id_checks = [IdChecks() if checks else None for _ in eval_tasks]
  train = [
      jax.jit(with_running_metrics(make_train_step(
          model, t.loss_layer, t.optimizer, lr_schedule=t.lr_schedule,
          rng_streams=tuple(options.rng_streams), task=i if multi else None,
          id_checks=id_checks[i])),
          in_shardings=(state_shardings, replicated, batch_sh),
          out_shardings=(state_shardings, replicated), donate_argnums=(0, 1))
      for i, t in enumerate(tasks)]
  evals = [
      jax.jit(make_eval_step(eval_model, t.metrics, t.metric_names,
                             use_ema=options.eval_on_ema, id_checks=eval_id_checks[i]),
              in_shardings=(state_shardings, batch_sh), out_shardings=replicated)
      for i, t in enumerate(eval_tasks)]
  return CompiledSteps(train, evals, id_checks, eval_id_checks)


def check_before_training(eval_model: nn.Module, state: Any, tasks: Sequence[TrainTask],
                          eval_tasks: Sequence[EvalTask], eval_steps: Sequence[Any], mesh: Mesh,
                          rules: Any, wanted_metrics: Sequence[str]) -> None:
  """The first batches' labels against the model's classes, each eval step traced on shapes,
  and the evaluation metrics that options name (`wanted_metrics`): a bad setup fails now, not
  after training."""
  with sharding.mesh_context(mesh, rules):
    check_labels(eval_model, state.variables, tasks[0].sample_batch, "training")
    for task in eval_tasks:
      check_labels(eval_model, state.variables, task.sample_batch, "eval")
  if eval_tasks:
    check_eval_setup(eval_tasks, eval_steps, state, mesh, rules)
    names = {f"{t.export_prefix}/{n}": 0.0 for t in eval_tasks for n in t.metric_names}
    for wanted in wanted_metrics:
      check_metric_name(wanted, names)
