"""The training loop: Trax's `Loop` on a device mesh, with Orbax checkpoints and metric writers.

```python
loop = Loop(model, TrainTask(train_data, tl.CrossEntropyLoss(), optax.adam(1e-3)),
            eval_tasks=[EvalTask(eval_data, [tl.CrossEntropyLoss(), tl.Accuracy()])],
            output_dir='/tmp/run')
loop.run(1000)        # resumes from /tmp/run/checkpoints if there is a checkpoint there
```

The loop always runs on a mesh (default: every device on `data`). The train state is created
already sharded, and the step is one `jax.jit` with in/out shardings and a donated state, traced
inside the mesh and the logical-axis rules. The sections below follow one run: setup, the hot
loop, metrics, evaluation and checkpoints. Their parts live in modules of their own:
`loop_setup` (output directory, state, compiled steps, checks before training), `loop_schedule`
(which task trains, when to evaluate and save, the end of a run), `loop_data` (batches read
ahead, checked and placed; data positions), `loop_reporting` (metrics fetched and written) and
`loop_options` (the rarer settings).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh

from declax import sharding
from declax.layers.base import with_mode
from declax.training import guards, loop_reporting, loop_schedule, loop_setup, metric_writers
from declax.training.callbacks import TrainingStepCallback, make_callbacks
from declax.training.config_schema import ConfigError
from declax.training.default_config import get_config
from declax.training.evaluation import check_metric_name, run_eval_tasks
from declax.training.loop_data import BatchFeeder, gather_json
from declax.training.loop_options import LoopOptions
from declax.training.optimizers import feed_plateau_metric
from declax.training.preemption import stop_on_sigterm
from declax.training.progress import Progress
from declax.training.reporting import MetricsBuffer
from declax.training.step import TrainMetrics
from declax.training.tasks import EvalTask, TrainTask

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
               checkpoint_low_metric: str | None = None, checkpoint_high_metric: str | None = None,
               permanent_checkpoint_at: Callable[[int], bool] | None = None,
               eval_at: Callable[[int], bool] | None = None,
               which_task: Callable[[int], int] | None = None,
               callbacks: Sequence[Callable[[Loop], TrainingStepCallback]] | None = None,
               sharding_rules: Any = None, eval_every: int | None = None, seed: int = 0,
               log_every: int = _DEFAULTS.log_every,
               keep_checkpoints: int | None = _DEFAULTS.keep_checkpoints,
               writers: metric_writers.MetricWriter | None = None,
               hparams: Mapping[str, Any] | None = None,
               profile_steps: Sequence[int] | None = None, **options: Any):
    self._tasks = [tasks] if isinstance(tasks, TrainTask) else list(tasks)
    if not self._tasks or not all(isinstance(t, TrainTask) for t in self._tasks):
      raise ConfigError(f"Loop takes a TrainTask or a non-empty list of them, got {tasks!r}")
    if log_every < 1:
      raise ConfigError(f"log_every must be >= 1, got {log_every}")
    eval_tasks = [eval_tasks] if isinstance(eval_tasks, EvalTask) else list(eval_tasks or [])
    self._eval_tasks, self._log_every = eval_tasks, log_every
    guards.check_keep_checkpoints(keep_checkpoints)
    self._options = o = LoopOptions(**options)
    self.model = model
    if eval_model is not None and eval_tasks:
      guards.check_eval_model(eval_model)
    self.eval_model = eval_model if eval_model is not None else with_mode(model, "eval")
    self.closed = False
    self._last_batch: Any = None
    self._schedule = loop_schedule.LoopSchedule.create(
        self._tasks, checkpoint_at=checkpoint_at, permanent_checkpoint_at=permanent_checkpoint_at,
        eval_at=eval_at, eval_every=eval_every, which_task=which_task,
        checkpoint_low_metric=checkpoint_low_metric, checkpoint_high_metric=checkpoint_high_metric)
    self._best = self._schedule.best
    self.preempted = self.stopped_early = self._stop_requested = self._stop_after = False
    self.mesh = mesh if isinstance(mesh, Mesh) else sharding.mesh_from_config(mesh)
    self.rules = sharding.rules_from_config(sharding_rules)
    self.output_dir = self._workdir_lock = self.checkpointer = self._release_claim = None
    (self.output_dir, self.checkpointer, self._workdir_lock, self._release_claim) = (
        loop_setup.open_output_dir(self, output_dir, keep_checkpoints, o.async_checkpoints,
                                   self._schedule.permanent_at, self._best, o.checkpoint_digests))
    self._feeder = BatchFeeder(self._tasks, self.mesh, o.prefetch, o.check_inputs)
    self._writer = (writers if writers is not None
                    else metric_writers.create_default_writer(self.output_dir))
    self.eval_history: list[tuple[int, dict[str, float]]] = []
    self._batch_specs = [loop_setup.global_specs(t) for t in self._tasks]
    sharding.check_batch_size(self._batch_specs[0][0].shape[0], self.mesh)
    start = loop_setup.start_state(self.model, self._tasks, self._batch_specs, self.mesh,
                                   self.rules, seed, self.checkpointer, o.init_params)
    self.state, self._step = start.state, int(jax.device_get(start.state.step))
    if start.step is not None:
      loop_setup.resume_data(self._tasks, start.step, start.data_state,
                             self.checkpointer.directory, self._multi)
    steps = loop_setup.compile_steps(self.model, self.eval_model, self._tasks, self._eval_tasks,
                                     self.mesh, start.shardings, o)
    self._train_steps, self._eval_steps = steps.train, steps.eval
    self._id_checks, self._eval_id_checks = steps.id_checks, steps.eval_id_checks
    loop_setup.check_before_training(self.eval_model, self.state, self._tasks, self._eval_tasks,
                                     self._eval_steps, self.mesh, self.rules,
                                     self._wanted_metrics())
    single = not self._multi
    self._state_check = guards.make_state_check(self.model if single else None,
                                                self._tasks[0].loss_layer if single else None,
                                                tuple(o.rng_streams))
    replicated = sharding.replicated(self.mesh)
    self._metrics = [MetricsBuffer(TrainMetrics, lambda x: jax.device_put(x, replicated),
                                   id_checks=checks) for checks in self._id_checks]
    self._callbacks = make_callbacks(self, callbacks, profile_steps, self.output_dir)
    if hparams:
      loop_reporting.write_hparams(self._writer, hparams, self._eval_tasks)
    if o.print_summary and jax.process_index() == 0:
      metric_writers.write_model_summary(
          self._writer, self.model, self._batch_specs[0][: model.n_in], self.state.params,
          self.mesh, self._step, self.output_dir, start.step,
          self.checkpointer.directory if start.step is not None else None)
    self._constructed = True

  # ==== Setup ===================================================================================

  def _wanted_metrics(self) -> list[str]:
    """The evaluation metrics that `checkpoint_*_metric` and the `plateau` option read."""
    wanted = [self._best and self._best[0], (self._options.plateau or {}).get("metric")]
    return [name for name in wanted if name and name != "train/loss"]

  @property
  def _multi(self) -> bool:
    """Per-task heads and optimizer states: several tasks, or a loss layer with parameters."""
    return len(self._tasks) > 1

  # ---- Public state ------------------------------------------------------------------------------

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
    """Ends `run` after the current step, as if it had reached its last step (early stopping)."""
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
      raise guards.LoopClosedError("this Loop is closed (its workdir lock is released and its "
                                   "checkpointer shut): create a new Loop on the same "
                                   "output_dir to train on (it resumes from the last checkpoint)")
    n_steps = guards.check_n_steps(n_steps)
    try:
      self._run(n_steps)
    except BaseException:
      loop_schedule.finish_saves(self.checkpointer)  # an in-flight save is completed, not abandoned
      raise

  def _run(self, n_steps: int) -> None:
    start, end = self._step, self._step + n_steps
    self.preempted = self._stop_requested = self._stop_after = False
    for w in loop_reporting.console_writers(self._writer):
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
        index = self._schedule.task_index(step)
        batch = self._feeder.next(index, step, self.checkpointer)
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
        if self._stop_requested or loop_schedule.preemption_reached(self.checkpointer, step):
          self._report(progress)
          self.save_checkpoint(wait=True)
          self.preempted = True
          log.warning("Preempted: saved step %d and stopped", step)
          break
        last = step == end
        if self._schedule.eval_at(step) and self._eval_tasks and not last:
          with progress.pause():
            self.evaluate()
            evaluated_at = step
        if not last and self._schedule.saves_at(step, evaluated=evaluated_at == step):
          loop_reporting.check_metrics(self._metrics, self.checkpointer)
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
        due = bool(self._eval_tasks) and self._step > start and evaluated_at != self._step
        loop_schedule.evaluate_and_save(self.save_checkpoint, self.evaluate, self.checkpointer,
                                        due, ranked=bool(self._best))
    self._writer.flush()

  # ==== Metrics =================================================================================

  def _report(self, progress: Progress, everything: bool = True) -> None:
    """Fetches pending training metrics (all, or the intervals that are due) and writes them."""
    prefixes = [f"train/{t.name(i)}/" if self._multi else "train/"
                for i, t in enumerate(self._tasks)]
    loop_reporting.report_metrics(self._metrics, self._writer, progress, prefixes,
                                  self.checkpointer, everything)

  # ==== Evaluation ==============================================================================

  def evaluate(self) -> dict[str, float]:
    """Runs every `EvalTask` on the current state; writes and returns `{'eval/name': value}`.

    (Trax's `run_evals`.) Also feeds the `plateau` option and redraws `curves.png`.
    """
    results = run_eval_tasks(self._eval_tasks, self._eval_steps, self.state, self.mesh,
                             self.rules, self._eval_id_checks)
    self._writer.write_scalars(self._step, results)
    self.eval_history.append((self._step, results))
    for wanted in self._wanted_metrics():
      check_metric_name(wanted, results)
    if self._options.plateau:
      self.state = self.state.replace(opt_state=feed_plateau_metric(
          self.state.opt_state, self._options.plateau, results))
    if self._options.plot_curves and self.output_dir is not None and jax.process_index() == 0:
      self._writer.flush()
      metric_writers.write_curves(self.output_dir)
    return results

  run_evals = evaluate  # Trax's name

  # ==== Checkpoints =============================================================================

  def save_checkpoint(self, wait: bool = False) -> None:
    """Saves the state and the data positions at the current step (no-op without output_dir),
    with the evaluation results of this step, if any (for `checkpoint_low_metric`).

    Call it only with reported (finite) metrics: `run` does.
    """
    if self.checkpointer is None:
      return
    if self.closed:
      raise guards.LoopClosedError("save_checkpoint() on a closed Loop: create a new one")
    with sharding.mesh_context(self.mesh, self.rules):
      problem = self._state_check(self.state, self._last_batch)
    if problem is not None:
      loop_schedule.finish_saves(self.checkpointer)
      raise guards.NonFiniteStateError(self._step, problem, self.checkpointer.latest_step(),
                                       self.checkpointer.directory)
    data_state = {loop_setup.data_key(i): gather_json(self._feeder.position(i))  # one per process
                  for i in range(len(self._tasks))}
    metrics = loop_schedule.ranking_metrics(self.eval_history, self._best, self._step)
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
    self._feeder.close()
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
