"""The training loop: Trax's `Loop` on a device mesh, with Orbax checkpoints and metric writers.

```python
loop = Loop(model, TrainTask(train_data, tl.CrossEntropyLoss(), optax.adam(1e-3)),
            eval_tasks=[EvalTask(eval_data, [tl.CrossEntropyLoss(), tl.Accuracy()])],
            output_dir='/tmp/run')
loop.run(1000)        # resumes from /tmp/run/checkpoints if there is a checkpoint there
```

The loop always runs on a mesh (default: every device on `data`). The train state is created
already sharded, and the step is one `jax.jit` with in/out shardings and a donated state, traced
inside the mesh and the logical-axis rules. The sections below follow one run: setup, state
(fresh or restored), the hot loop, metrics, evaluation, checkpoints and preemption.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from grain.experimental import ThreadPrefetchDatasetIterator
from jax.sharding import Mesh

from declax import sharding
from declax.layers.base import with_mode
from declax.training.callbacks import ProfileSteps, TrainingStepCallback, at_every
from declax.training.checkpoints import Checkpointer, gather_json, local_position
from declax.training.config_schema import ConfigError
from declax.training.default_config import get_config
from declax.training.evaluation import check_metric_name, run_eval_tasks
from declax.training.guards import (
  LoopClosedError,
  NonFiniteStateError,
  check_eval_model,
  check_eval_setup,
  check_keep_checkpoints,
  check_labels,
  check_n_steps,
  claim_workdir,
  make_state_check,
)
from declax.training.id_checks import IdChecks, IdRangeError
from declax.training.loop_options import LoopOptions
from declax.training.metric_writers import (
  ConsoleWriter,
  MetricWriter,
  MultiWriter,
  create_default_writer,
  write_curves,
  write_model_summary,
)
from declax.training.optimizers import feed_plateau
from declax.training.preemption import stop_on_sigterm
from declax.training.progress import Progress
from declax.training.reporting import (
  MetricsBuffer,
  NonFiniteInputError,
  NonFiniteLossError,
  check_finite_batch,
)
from declax.training.state import Head, create_or_restore_state
from declax.training.step import (
  TrainMetrics,
  make_eval_step,
  make_train_step,
  with_running_metrics,
)
from declax.training.tasks import EvalTask, PlacedBatches, TrainTask
from declax.training.workdir import check_writable, lock_workdir

__all__ = ["Loop", "LoopOptions"]

log = logging.getLogger(__name__)

_DEFAULTS = get_config().train
LOG_SECONDS = 10.0  # a progress line at least this often, however slow the steps


class Loop:
  """Trains `model` on `TrainTask`s, evaluating, logging and checkpointing as it goes.

  **Arguments** (Trax's names)
  - `model`: a declax layer in `'train'` mode; `eval_model` defaults to
    `tl.with_mode(model, 'eval')` and uses the same variables.
  - `tasks`: a `TrainTask` or a list. With several, `which_task(step)` (default
    `step % len(tasks)`) picks the task of each step; the model is shared and each task's
    `loss_layer` may hold parameters of its own (a head: `Serial(Dense(n), LogSoftmax(),
    CrossEntropyLoss())`), trained with that task's optimizer.
  - `eval_tasks`: `EvalTask`s, run on the eval model when `eval_at(step)` (default: every
    `eval_every` steps, else the checkpoint interval, else 100) and at the end of every `run`.
  - `output_dir`: checkpoints (`output_dir/checkpoints`), `metrics.jsonl`, TensorBoard files,
    `curves.png` and `model_summary.txt`. If it holds a checkpoint, the loop resumes from it:
    parameters, optimizer state, step, PRNG key and the data positions.
  - `checkpoint_at(step)`: save then (default: every task 0 `n_steps_per_checkpoint`);
    `permanent_checkpoint_at(step)`: those checkpoints are never deleted;
    `checkpoint_low_metric` / `checkpoint_high_metric`: an evaluation metric (`'eval/loss'`,
    or Trax's bare `'loss'`) whose lowest / highest checkpoint is kept beside the newest
    `keep_checkpoints` (every evaluation is saved to compete).
  - `callbacks`: `TrainingStepCallback` classes (or `loop -> callback` factories).
  - `mesh`, `sharding_rules`: the device mesh (`declax.sharding`); None: all devices on `data`.
  - `log_every`: report training metrics every this many steps (summed on the device).
  - `seed`, `writers` (default: console, JSON lines, TensorBoard), `hparams` (written once),
    `profile_steps`: `(first, last)` steps to trace with `jax.profiler` into
    `output_dir/tensorboard`.
  - `**options`: the rarer settings of `LoopOptions` (`prefetch`, `handle_signals`, ...).

  Defaults are those of the base config (`declax.training.default_config`). The `output_dir`
  is locked while the loop uses it: a second run on it fails with `WorkdirLockedError`.
  """

  def __init__(self, model: nn.Module, tasks: TrainTask | Sequence[TrainTask],
               eval_model: nn.Module | None = None,
               eval_tasks: EvalTask | Sequence[EvalTask] | None = None,
               output_dir: str | os.PathLike | None = None,
               mesh: Mesh | Mapping[str, int] | None = None, *,
               checkpoint_at: Callable[[int], bool] | None = None,
               checkpoint_low_metric: str | None = None,
               checkpoint_high_metric: str | None = None,
               permanent_checkpoint_at: Callable[[int], bool] | None = None,
               eval_at: Callable[[int], bool] | None = None,
               which_task: Callable[[int], int] | None = None,
               callbacks: Sequence[Callable[[Loop], TrainingStepCallback]] | None = None,
               sharding_rules: Any = None, eval_every: int | None = None,
               log_every: int = _DEFAULTS.log_every,
               keep_checkpoints: int | None = _DEFAULTS.keep_checkpoints, seed: int = 0,
               writers: MetricWriter | None = None, hparams: Mapping[str, Any] | None = None,
               profile_steps: Sequence[int] | None = None, **options: Any):
    self._tasks = [tasks] if isinstance(tasks, TrainTask) else list(tasks)
    if not self._tasks or not all(isinstance(t, TrainTask) for t in self._tasks):
      raise ConfigError(f"Loop takes a TrainTask or a non-empty list of them, got {tasks!r}")
    if log_every < 1:
      raise ConfigError(f"log_every must be >= 1, got {log_every}")
    eval_tasks = [eval_tasks] if isinstance(eval_tasks, EvalTask) else list(eval_tasks or [])
    self._eval_tasks, self._log_every = eval_tasks, log_every
    check_keep_checkpoints(keep_checkpoints)
    self._options = o = LoopOptions(**options)
    self.model = model
    if eval_model is not None and eval_tasks:
      check_eval_model(eval_model)
    self.eval_model = eval_model if eval_model is not None else with_mode(model, "eval")
    self.closed = False
    self._last_batch: Any = None
    every = self._tasks[0].n_steps_per_checkpoint
    self._checkpoint_at = checkpoint_at or at_every(every)
    self._eval_at = eval_at or at_every(eval_every or every or 100)
    self._which_task = which_task or (lambda step: step % len(self._tasks))
    self._best = self._best_metric(checkpoint_low_metric, checkpoint_high_metric)
    self._prefetchers: dict[int, ThreadPrefetchDatasetIterator] = {}
    self.preempted = self.stopped_early = self._stop_requested = self._stop_after = False
    self.mesh = mesh if isinstance(mesh, Mesh) else sharding.mesh_from_config(mesh)
    self.rules = sharding.rules_from_config(sharding_rules)
    self._permanent_at = permanent_checkpoint_at or self._permanent_default()
    self._open_output_dir(output_dir, keep_checkpoints, o.async_checkpoints, self._permanent_at)
    self._writer = writers if writers is not None else create_default_writer(self.output_dir)
    self.eval_history: list[tuple[int, dict[str, float]]] = []
    self._batch_specs = [self._global_specs(t) for t in self._tasks]
    sharding.check_batch_size(self._batch_specs[0][0].shape[0], self.mesh)
    start = self._start_state(seed)
    self.state, self._step = start.state, int(jax.device_get(start.state.step))
    if start.step is not None:
      self._resume_data(start.step, start.data_state)
    self._compile_steps(start.shardings, o.rng_streams)
    with sharding.mesh_context(self.mesh, self.rules):
      check_labels(self.eval_model, self.state.variables, self._tasks[0].sample_batch,
                   "training")
      for task in self._eval_tasks:
        check_labels(self.eval_model, self.state.variables, task.sample_batch, "eval")
    if self._eval_tasks:  # a bad eval setup fails now, not after training
      check_eval_setup(self._eval_tasks, self._eval_steps, self.state, self.mesh, self.rules)
      names = {f"{t.export_prefix}/{n}": 0.0 for t in self._eval_tasks for n in t.metric_names}
      for wanted in [self._best and self._best[0], (o.plateau or {}).get("metric")]:
        if wanted and wanted != "train/loss":
          check_metric_name(wanted, names)
    single = not self._multi
    self._state_check = make_state_check(self.model if single else None,
                                         self._tasks[0].loss_layer if single else None,
                                         tuple(o.rng_streams))
    replicated = sharding.replicated(self.mesh)
    self._metrics = [MetricsBuffer(TrainMetrics, lambda x: jax.device_put(x, replicated),
                                   id_checks=checks) for checks in self._id_checks]
    self._callbacks = [make(self) for make in (callbacks or [])]
    if profile_steps is not None:
      if self.output_dir is None:
        raise ConfigError("profile_steps needs an output_dir (the trace goes to its "
                          "tensorboard folder)")
      first, last = profile_steps
      self._callbacks.append(ProfileSteps(self, int(first), int(last),
                                          os.path.join(self.output_dir, "tensorboard")))
    if hparams:
      self._write_hparams(dict(hparams))
    if o.print_summary:
      self._write_summary(self._batch_specs[0][: model.n_in], resumed_from=start.step)
    self._constructed = True

  # ==== Setup ===================================================================================

  def _permanent_default(self) -> Callable[[int], bool]:
    return at_every(self._tasks[0].n_steps_per_permanent_checkpoint)

  @staticmethod
  def _best_metric(low: str | None, high: str | None) -> tuple[str, str] | None:
    if low is not None and high is not None:
      raise ConfigError("pass checkpoint_low_metric or checkpoint_high_metric, not both")
    name, mode = (low, "min") if low is not None else (high, "max")
    if name is None:
      return None
    return (name if "/" in name else f"eval/{name}"), mode

  def _open_output_dir(self, output_dir: str | os.PathLike | None,
                       keep_checkpoints: int | None, async_checkpoints: bool,
                       permanent_at: Callable[[int], bool] | None) -> None:
    """Locks the output directory (before anything writes there) and opens its checkpoints."""
    self.output_dir = os.path.abspath(os.fspath(output_dir)) if output_dir is not None else None
    self._workdir_lock = self.checkpointer = self._release_claim = None
    if self.output_dir is None:
      return
    self._release_claim = claim_workdir(self.output_dir, self)  # one live Loop per dir
    weakref.finalize(self, self._release_claim)
    if jax.process_index() == 0:
      self._workdir_lock = lock_workdir(self.output_dir)
      weakref.finalize(self, self._workdir_lock.release)  # also if __init__ fails later
    else:
      check_writable(self.output_dir)
    best_metric, best_mode = self._best or (None, "min")
    self.checkpointer = Checkpointer(os.path.join(self.output_dir, "checkpoints"),
                                     max_to_keep=keep_checkpoints, async_save=async_checkpoints,
                                     best_metric=best_metric, best_mode=best_mode,
                                     permanent=permanent_at,
                                     digests=self._options.checkpoint_digests)

  @staticmethod
  def _global_specs(task: TrainTask) -> tuple[jax.ShapeDtypeStruct, ...]:
    n_proc = jax.process_count()
    return tuple(jax.ShapeDtypeStruct((x.shape[0] * n_proc, *x.shape[1:]), x.dtype)
                 for x in map(np.asarray, task.sample_batch))

  @property
  def _multi(self) -> bool:
    """Per-task heads and optimizer states: several tasks, or a loss layer with parameters."""
    return len(self._tasks) > 1

  def _start_state(self, seed: int) -> Any:
    heads = ([Head(t.loss_layer, specs) for t, specs in zip(self._tasks, self._batch_specs,
                                                             strict=True)]
             if self._multi else None)
    optimizer = [t.optimizer for t in self._tasks] if self._multi else self._tasks[0].optimizer
    return create_or_restore_state(self.model, optimizer, self._batch_specs[0][: self.model.n_in],
                                   self.mesh, self.rules, seed=seed,
                                   checkpointer=self.checkpointer, heads=heads,
                                   init_params=self._options.init_params)

  @staticmethod
  def _data_key(index: int) -> str:
    return "train" if index == 0 else f"train_{index}"

  def _resume_data(self, step: int, data_state: dict) -> None:
    for i, task in enumerate(self._tasks):
      if self._data_key(i) not in data_state and task.data_checkpointable:
        log.warning("checkpoint step %d in %s holds no data position for task %d (its 'data' "
                    "item is missing): its training data restarts from the first batch. "
                    "Restore the item from a copy to resume the data exactly", step,
                    self.checkpointer.directory, i)
      try:
        task.set_data_state(local_position(data_state.get(self._data_key(i))))
      except (ValueError, TypeError, KeyError) as error:
        raise ConfigError(
            f"cannot resume the training data{f' of task {i}' if self._multi else ''} at "
            f"checkpoint step {step} "
            f"({self.checkpointer.directory}): {str(error).rstrip('.')}. The data settings "
            "(dataset, batch size, seed, number of processes) must be those of the run that "
            "saved it."
        ) from error
    log.info("Resumed from %s at step %d", self.checkpointer.directory, step)

  def _compile_steps(self, state_shardings: Any, rng_streams: Sequence[str]) -> None:
    """One `jax.jit` per task's step: sharded in and out, donating the state and the running
    metrics, which it returns merged with the step's (constant memory, no fetch per step)."""
    batch_sh, replicated = sharding.batch_sharding(self.mesh), sharding.replicated(self.mesh)
    checks = self._options.check_ids  # labels and token ids in range, on every batch
    self._id_checks = [IdChecks() if checks else None for _ in self._tasks]
    self._eval_id_checks = [IdChecks() if checks else None for _ in self._eval_tasks]
    self._train_steps = [
        jax.jit(with_running_metrics(make_train_step(
            self.model, t.loss_layer, t.optimizer, lr_schedule=t.lr_schedule,
            rng_streams=tuple(rng_streams), task=i if self._multi else None,
            id_checks=self._id_checks[i])),
            in_shardings=(state_shardings, replicated, batch_sh),
            out_shardings=(state_shardings, replicated), donate_argnums=(0, 1))
        for i, t in enumerate(self._tasks)]
    self._eval_steps = [
        jax.jit(make_eval_step(self.eval_model, t.metrics, t.metric_names,
                               use_ema=self._options.eval_on_ema,
                               id_checks=self._eval_id_checks[i]),
                in_shardings=(state_shardings, batch_sh), out_shardings=replicated)
        for i, t in enumerate(self._eval_tasks)]

  # ---- Public state --------------------------------------------------------------------------

  @property
  def step(self) -> int:
    """The number of training steps taken (including those before a resume)."""
    return self._step

  @property
  def tasks(self) -> list[TrainTask]:
    return list(self._tasks)

  @property
  def eval_tasks(self) -> list[EvalTask]:
    return list(self._eval_tasks)

  @property
  def params(self) -> Any:
    """The model's parameters (`model.apply({'params': loop.params, ...}, x)`)."""
    return self.state.params

  def predict(self, inputs: Any) -> Any:
    """The model's outputs on new `inputs`, in `'eval'` mode with the current variables.

    ```python
    logits = loop.predict(x_test)   # see declax.training.predict for the workdir variant
    ```
    """
    from declax.training.predict import predict  # late import: predict builds on the loop's API

    return predict(self.model, self.state.variables, inputs)

  @property
  def losses(self) -> list[tuple[int, float]]:
    """`(step, mean training loss of the log interval ending there)` of every report so far
    (the most recent 100k), for task 0 (`task_losses(i)` for others)."""
    return list(self._metrics[0].losses)

  def task_losses(self, index: int) -> list[tuple[int, float]]:
    return list(self._metrics[index].losses)

  def _request_stop(self) -> None:
    self._stop_requested = True

  def stop(self) -> None:
    """Ends `run` after the current step, as if it had reached its last step (early stopping).
    """
    self._stop_after = True

  def lower_train_step(self, task: int = 0) -> jax.stages.Lowered:
    """The train step lowered for the current state and batch shapes, inside the mesh and rules.

    For ahead-of-time inspection: `loop.lower_train_step().as_text()` is the StableHLO that
    runs, `.compile().memory_analysis()` its memory.
    """
    batch_sh = sharding.batch_sharding(self.mesh)
    batch = tuple(jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=batch_sh)
                  for s in self._batch_specs[task])
    with sharding.mesh_context(self.mesh, self.rules):
      return self._train_steps[task].lower(self.state, self._metrics[task].running, batch)

  # ==== The hot loop ============================================================================

  def run(self, n_steps: int = 1) -> None:
    """Trains `n_steps` more steps, then evaluates and saves a checkpoint (with `output_dir`).

    Returns early, after saving, on SIGTERM or a multi-host preemption notice (`self.preempted`
    is then True), or on `stop()` (early stopping: `self.stopped_early`). Raises
    `NonFiniteLossError` on a NaN/inf loss, saving nothing from that step on.
    """
    if self.closed:
      raise LoopClosedError("this Loop is closed (its workdir lock is released and its "
                            "checkpointer shut): create a new Loop on the same output_dir to "
                            "train on (it resumes from the last checkpoint)")
    n_steps = check_n_steps(n_steps)
    try:
      self._run(n_steps)
    except BaseException:
      self._finish_saves()  # an in-flight save is completed, not abandoned, before re-raising
      raise

  def _finish_saves(self) -> None:
    if self.checkpointer is None:
      return
    try:
      self.checkpointer.wait_until_finished()
    except Exception as error:  # noqa: BLE001 - the original error is the one to report
      log.error("A pending checkpoint save failed while stopping: %s", error)

  def _run(self, n_steps: int) -> None:
    start, end = self._step, self._step + n_steps
    self.preempted = self._stop_requested = self._stop_after = False
    for w in self._console_writers():
      w.total_steps = end
    progress = Progress(total_steps=end, batch_size=self._batch_specs[0][0].shape[0])
    progress.start(start)
    last_mark = time.monotonic()
    evaluated_at = None
    with (stop_on_sigterm(self._options.handle_signals, self._request_stop),
          sharding.peer_failures(lambda: f"training step {self._step + 1}"),
          sharding.mesh_context(self.mesh, self.rules)):
      for step in range(start + 1, end + 1):
        for callback in self._callbacks:  # `call_at` asked before and after, as Trax does
          if callback.call_at(step):
            callback.on_step_begin(step)
        index = self._task_index(step)
        batch = self._next_batch(index, step)
        buffer = self._metrics[index]
        self.state, buffer.running = self._train_steps[index](self.state, buffer.running, batch)
        self._last_batch = batch if index == 0 else self._last_batch
        self._step = step
        buffer.add(step)
        self._report(progress, everything=False)  # the previous interval: done or nearly
        if step % self._log_every == 0 or time.monotonic() - last_mark >= LOG_SECONDS:
          for b in self._metrics:  # every log_every steps, and at least every LOG_SECONDS
            b.mark()
          last_mark = time.monotonic()
        if self._preemption(step):
          self._report(progress)
          self.save_checkpoint(wait=True)
          self.preempted = True
          log.warning("Preempted: saved step %d and stopped", step)
          break
        last = step == end
        if self._eval_at(step) and self._eval_tasks and not last:
          with progress.pause():
            self.evaluate()
            evaluated_at = step
        if not last and (self._checkpoint_at(step) or self._permanent_at(step)
                         or evaluated_at == step and self._best):
          self._check_metrics()
          self._report(progress, everything=False)  # log what is due before the checkpoint:
          with progress.pause():                     # a crash after it must not lose it
            self.save_checkpoint()
        for callback in self._callbacks:
          if callback.call_at(step):
            callback.on_step_end(step)
        if self._stop_after and not last:
          self.stopped_early = True
          log.warning("Stopped at step %d (of %d) on request", step, end)
          break
      if not self.preempted:
        self._report(progress)
        self._evaluate_and_save(self._eval_tasks and self._step > start
                                and evaluated_at != self._step)
    self._writer.flush()

  def _evaluate_and_save(self, evaluate: bool) -> None:
    """The end of a run: a failing evaluation never costs the trained steps. The checkpoint
    is written first (before the evaluation), except with `checkpoint_*_metric`, which ranks
    it by this evaluation: then it is written after, or without metrics if the evaluation
    fails."""
    if not evaluate:
      self.save_checkpoint(wait=True)
      return
    if not self._best:
      self.save_checkpoint()
      self.evaluate()
      self._finish_saves_or_raise()
      return
    try:
      self.evaluate()
    except BaseException:
      self.save_checkpoint(wait=True)
      raise
    self.save_checkpoint(wait=True)

  def _finish_saves_or_raise(self) -> None:
    if self.checkpointer is not None:
      self.checkpointer.wait_until_finished()

  def _task_index(self, step: int) -> int:
    index = self._which_task(step)
    if not 0 <= index < len(self._tasks):
      raise ConfigError(f"which_task({step}) returned {index}; there are {len(self._tasks)} "
                        "tasks")
    return int(index)

  def _next_batch(self, index: int, step: int) -> tuple:
    task = self._tasks[index]
    try:
      if self._options.prefetch <= 0:
        return self._place_batch(task.next_batch())
      if index not in self._prefetchers:  # grain's thread reads and places batches ahead
        self._prefetchers[index] = ThreadPrefetchDatasetIterator(
            PlacedBatches(task, self._place_batch), self._options.prefetch)
      return next(self._prefetchers[index])
    except StopIteration:
      raise ConfigError(f"the TrainTask's labeled_data ran out of batches at step {step}; "
                       "training data must be an endless iterator (num_epochs=None)") from None
    except NonFiniteInputError as error:
      latest = directory = None
      if self.checkpointer is not None:
        self.checkpointer.wait_until_finished()
        latest, directory = self.checkpointer.latest_step(), self.checkpointer.directory
      raise NonFiniteInputError(error.item, error.description, error.counts, step, latest,
                                directory) from None

  def _place_batch(self, batch: Any) -> tuple:
    """Checks a host batch (`check_inputs`) and places it on the mesh."""
    if self._options.check_inputs:
      check_finite_batch(batch)
    return sharding.shard_batch(batch, self.mesh)

  def _data_position(self, index: int) -> Any:
    """Task `index`'s data state after the last batch trained on (not the ones read ahead)."""
    prefetcher = self._prefetchers.get(index)  # its state: after the batch handed out last
    return prefetcher.get_state() if prefetcher else self._tasks[index].data_state()

  def _preemption(self, step: int) -> bool:
    if self._stop_requested:
      return True
    if self.checkpointer is not None and jax.process_count() > 1:
      return self.checkpointer.reached_preemption(step)
    return False

  # ==== Metrics =================================================================================

  @contextlib.contextmanager
  def _non_finite_context(self) -> Iterator[None]:
    """Adds the last good checkpoint to a `NonFiniteLossError` or an `IdRangeError`."""
    try:
      yield
    except IdRangeError as error:
      if self.checkpointer is None:
        raise
      self.checkpointer.wait_until_finished()
      raise error.with_checkpoint(self.checkpointer.latest_step(),
                                  self.checkpointer.directory) from None
    except NonFiniteLossError as error:
      latest = None
      if self.checkpointer is not None:
        self.checkpointer.wait_until_finished()
        latest = self.checkpointer.latest_step()
      directory = self.checkpointer.directory if self.checkpointer else None
      raise NonFiniteLossError(error.step, error.value, latest, directory,
                               getattr(error, "quantity", "loss")) from None

  def _check_metrics(self) -> None:
    with self._non_finite_context():
      for buffer in self._metrics:
        buffer.check()

  def _report(self, progress: Progress, everything: bool = True) -> None:
    """Fetches pending training metrics (all, or the intervals that are due) and writes them."""
    for index, buffer in enumerate(self._metrics):
      if not everything and not buffer.has_due:
        continue
      with self._non_finite_context():
        chunk = buffer.take_all() if everything else buffer.take_due()
      if chunk is None:
        continue
      step, values = chunk
      prefix = "train/" if not self._multi else f"train/{self._tasks[index].name(index)}/"
      scalars = {f"{prefix}{k}": v for k, v in values.items()
                 if not (k == "learning_rate" and np.isnan(v))}  # unknown rate: left out
      scalars.update(progress.measure(step))
      self._writer.write_scalars(step, scalars)

  def _console_writers(self) -> list[ConsoleWriter]:
    writers = self._writer.writers if isinstance(self._writer, MultiWriter) else [self._writer]
    return [w for w in writers if isinstance(w, ConsoleWriter)]

  def _write_hparams(self, hparams: dict[str, Any]) -> None:
    names = ["train/loss"] + [f"{t.export_prefix}/{n}" for t in self._eval_tasks
                              for n in t.metric_names]
    if isinstance(self._writer, MultiWriter):
      self._writer.write_hparams(hparams, metrics=names)
    else:
      self._writer.write_hparams(hparams)

  def _write_summary(self, model_inputs: Sequence[jax.ShapeDtypeStruct],
                     resumed_from: int | None) -> None:
    if jax.process_index() == 0:
      where = self.checkpointer.directory if resumed_from is not None else None
      write_model_summary(self._writer, self.model, model_inputs, self.state.params, self.mesh,
                          self._step, self.output_dir, resumed_from, where)

  # ==== Evaluation ==============================================================================

  def evaluate(self) -> dict[str, float]:
    """Runs every `EvalTask` on the current state; writes and returns `{'eval/name': value}`.

    (Trax's `run_evals`.) Also feeds the `plateau` option and redraws `curves.png`.
    """
    results = run_eval_tasks(self._eval_tasks, self._eval_steps, self.state, self.mesh,
                             self.rules, self._eval_id_checks)
    self._writer.write_scalars(self._step, results)
    self.eval_history.append((self._step, results))
    for wanted in [self._best and self._best[0], (self._options.plateau or {}).get("metric")]:
      if wanted and wanted != "train/loss":
        check_metric_name(wanted, results)
    if self._options.plateau and self._options.plateau.get("metric", "train/loss") in results:
      kwargs = {k: v for k, v in self._options.plateau.items() if k != "metric"}
      value = results[self._options.plateau["metric"]]
      self.state = self.state.replace(opt_state=feed_plateau(self.state.opt_state, value,
                                                             **kwargs))
    if self._options.plot_curves and self.output_dir is not None and jax.process_index() == 0:
      self._writer.flush()
      write_curves(self.output_dir)
    return results

  def run_evals(self) -> dict[str, float]:
    """Trax's name for `evaluate`."""
    return self.evaluate()

  # ==== Checkpoints =============================================================================

  def save_checkpoint(self, wait: bool = False) -> None:
    """Saves the state and the data positions at the current step (no-op without output_dir),
    with the evaluation results of this step, if any (for `checkpoint_low_metric`).

    Call it only with reported (finite) metrics: `run` does.
    """
    if self.checkpointer is None:
      return
    if self.closed:
      raise LoopClosedError("save_checkpoint() on a closed Loop: create a new one")
    with sharding.mesh_context(self.mesh, self.rules):
      problem = self._state_check(self.state, self._last_batch)
    if problem is not None:
      self._finish_saves()
      raise NonFiniteStateError(self._step, problem, self.checkpointer.latest_step(),
                                self.checkpointer.directory)
    data_state = {self._data_key(i): gather_json(self._data_position(i))  # one per process
                  for i in range(len(self._tasks))}
    metrics = (self.eval_history[-1][1] if self.eval_history and self._best
               and self.eval_history[-1][0] == self._step else None)
    self.checkpointer.save(self._step, self.state, data_state, force=True, metrics=metrics)
    if wait:
      self.checkpointer.wait_until_finished()

  def close(self) -> None:
    """Stops prefetching, waits for pending checkpoint writes and closes the writers.

    A closed Loop refuses to `run` (`LoopClosedError`); closing twice does nothing.
    """
    if self.closed:
      return
    self.closed = True
    for index, prefetcher in self._prefetchers.items():
      position = prefetcher.get_state()
      prefetcher.close()
      self._tasks[index].set_data_state(position)  # rewind what was read ahead
    self._prefetchers = {}
    for callback in self._callbacks:
      if hasattr(callback, "close"):
        callback.close()
    try:
      if self.checkpointer is not None:
        self.checkpointer.close()
      self._writer.close()
    finally:
      if self._workdir_lock is not None:
        self._workdir_lock.release()
      if self._release_claim is not None:
        self._release_claim()

  def __enter__(self) -> Loop:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
