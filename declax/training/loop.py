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
import dataclasses
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh

from declax import sharding
from declax.layers.base import summary, with_mode
from declax.training.checkpoints import Checkpointer, gather_json, local_position
from declax.training.config_schema import ConfigError
from declax.training.default_config import get_config
from declax.training.metric_writers import (
  ConsoleWriter,
  MetricWriter,
  MultiWriter,
  create_default_writer,
)
from declax.training.prefetch import Prefetcher
from declax.training.progress import Progress
from declax.training.reporting import (
  MetricsBuffer,
  NonFiniteInputError,
  NonFiniteLossError,
  check_finite_batch,
)
from declax.training.state import create_or_restore_state
from declax.training.step import make_eval_step, make_train_step
from declax.training.tasks import EvalTask, TrainTask
from declax.training.workdir import check_writable, lock_workdir

__all__ = ["Loop", "LoopOptions"]

log = logging.getLogger(__name__)

_DEFAULTS = get_config().train
LOG_SECONDS = 10.0  # a progress line at least this often, however slow the steps


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """The `Loop`'s rarely changed settings, passed to it by name (`Loop(..., prefetch=0)`).

  - `async_checkpoints`: save in the background.
  - `rng_streams`: the RNG names the model draws from in training.
  - `handle_signals`: on SIGTERM, save a checkpoint at the current step and return from `run`
    with `loop.preempted` set (multi-host runs use JAX's preemption sync point instead).
  - `print_summary`: write the model summary and parameter count at construction.
  - `prefetch`: read and place this many training batches ahead in a background thread
    (0: read each batch in the training thread).
  - `check_inputs`: stop with `NonFiniteInputError` on a training batch holding NaN or inf
    (checked on the host, in the prefetch thread).
  """

  async_checkpoints: bool = True
  rng_streams: Sequence[str] = ("dropout",)
  handle_signals: bool = True
  print_summary: bool = True
  prefetch: int = 2
  check_inputs: bool = True


class Loop:
  """Trains `model` on a `TrainTask`, evaluating, logging and checkpointing as it goes.

  **Arguments**
  - `model`: a declax layer in `'train'` mode; `eval_model` defaults to
    `tl.with_mode(model, 'eval')` and uses the same variables.
  - `tasks`: one `TrainTask` (or a one-element list); `eval_tasks`: `EvalTask`s.
  - `output_dir`: checkpoints (`output_dir/checkpoints`), `metrics.jsonl`, TensorBoard files
    and `model_summary.txt`. If it holds a checkpoint, the loop resumes from it: parameters,
    optimizer state, step, PRNG key and the data position.
  - `mesh`: a `jax.sharding.Mesh` or a `config.mesh` dict; None puts every device on `data`.
  - `sharding_rules`: overrides of the logical-axis rules (`declax.sharding`).
  - `eval_every`: evaluate every this many steps (default: the checkpoint interval, else 100)
    and at the end of every `run`; `log_every`: report training metrics every this many steps.
  - `keep_checkpoints`: how many checkpoints to keep (None: all).
  - `seed`: the initialisation and dropout PRNG seed.
  - `writers`: a `MetricWriter` (default: console, plus JSON lines and TensorBoard in
    `output_dir`, on process 0 only); `hparams`: written once through the writers.
  - `**options`: the rarer settings of `LoopOptions` (`prefetch`, `handle_signals`, ...).

  Defaults are those of the base config (`declax.training.default_config`). The `output_dir`
  is locked while the loop uses it (`declax.training.workdir`): a second run on the same
  directory fails with `WorkdirLockedError` instead of corrupting checkpoints.
  """

  def __init__(self, model: nn.Module, tasks: TrainTask | Sequence[TrainTask],
               eval_model: nn.Module | None = None,
               eval_tasks: Sequence[EvalTask] | None = None,
               output_dir: str | os.PathLike | None = None,
               mesh: Mesh | Mapping[str, int] | None = None, *, sharding_rules: Any = None,
               eval_every: int | None = None, log_every: int = _DEFAULTS.log_every,
               keep_checkpoints: int | None = _DEFAULTS.keep_checkpoints, seed: int = 0,
               writers: MetricWriter | None = None, hparams: Mapping[str, Any] | None = None,
               **options: Any):
    tasks = [tasks] if isinstance(tasks, TrainTask) else list(tasks)
    if len(tasks) != 1 or not isinstance(tasks[0], TrainTask):
      raise ConfigError(f"Loop takes exactly one TrainTask, got {tasks!r}")
    if log_every < 1:
      raise ConfigError(f"log_every must be >= 1, got {log_every}")
    self._task, self._eval_tasks, self._log_every = tasks[0], list(eval_tasks or []), log_every
    self._options = o = LoopOptions(**options)
    self.model = model
    self.eval_model = eval_model if eval_model is not None else with_mode(model, "eval")
    self._checkpoint_every = self._task.n_steps_per_checkpoint
    self._eval_every = eval_every or self._checkpoint_every or 100
    self._prefetcher: Prefetcher | None = None
    self.preempted = self._stop_requested = False
    self.mesh = mesh if isinstance(mesh, Mesh) else sharding.mesh_from_config(mesh)
    self.rules = sharding.rules_from_config(sharding_rules)
    self._open_output_dir(output_dir, keep_checkpoints, o.async_checkpoints)
    self._writer = writers if writers is not None else create_default_writer(self.output_dir)
    self._metrics = MetricsBuffer()
    self.eval_history: list[tuple[int, dict[str, float]]] = []
    n_proc = jax.process_count()
    self._batch_specs = tuple(jax.ShapeDtypeStruct((x.shape[0] * n_proc, *x.shape[1:]), x.dtype)
                              for x in map(np.asarray, self._task.sample_batch))
    sharding.check_batch_size(self._batch_specs[0].shape[0], self.mesh)
    start = create_or_restore_state(model, self._task.optimizer,
                                    self._batch_specs[: model.n_in], self.mesh, self.rules,
                                    seed=seed, checkpointer=self.checkpointer)
    self.state, self._step = start.state, int(jax.device_get(start.state.step))
    if start.step is not None:
      self._resume_data(start.step, start.data_state)
    self._compile_steps(start.shardings, o.rng_streams)
    if hparams:
      self._writer.write_hparams(dict(hparams))
    if o.print_summary:
      self._write_summary(self._batch_specs[: model.n_in], resumed_from=start.step)

  def _open_output_dir(self, output_dir: str | os.PathLike | None,
                       keep_checkpoints: int | None, async_checkpoints: bool) -> None:
    """Locks the output directory (before anything writes there) and opens its checkpoints."""
    self.output_dir = os.path.abspath(os.fspath(output_dir)) if output_dir is not None else None
    self._workdir_lock = self.checkpointer = None
    if self.output_dir is None:
      return
    if jax.process_index() == 0:
      self._workdir_lock = lock_workdir(self.output_dir)
      weakref.finalize(self, self._workdir_lock.release)  # also if __init__ fails later
    else:
      check_writable(self.output_dir)
    self.checkpointer = Checkpointer(os.path.join(self.output_dir, "checkpoints"),
                                     max_to_keep=keep_checkpoints, async_save=async_checkpoints)

  def _resume_data(self, step: int, data_state: dict) -> None:
    try:
      self._task.set_data_state(local_position(data_state.get("train")))
    except (ValueError, TypeError, KeyError) as error:
      raise ConfigError(
          f"cannot resume the training data at checkpoint step {step} "
          f"({self.checkpointer.directory}): {str(error).rstrip('.')}. The data settings "
          "(dataset, batch size, seed, number of processes) must be those of the run that "
          "saved it."
      ) from error
    log.info("Resumed from %s at step %d", self.checkpointer.directory, step)

  def _compile_steps(self, state_shardings: Any, rng_streams: Sequence[str]) -> None:
    """One `jax.jit` per step: sharded in and out, the train step donating the state."""
    batch_sh, replicated = sharding.batch_sharding(self.mesh), sharding.replicated(self.mesh)
    self._train_step = jax.jit(
        make_train_step(self.model, self._task.loss_layer, self._task.optimizer,
                        lr_schedule=self._task.lr_schedule, rng_streams=tuple(rng_streams)),
        in_shardings=(state_shardings, batch_sh),
        out_shardings=(state_shardings, replicated), donate_argnums=0)
    self._eval_steps = [
        jax.jit(make_eval_step(self.eval_model, t.metrics, t.metric_names),
                in_shardings=(state_shardings, batch_sh), out_shardings=replicated)
        for t in self._eval_tasks]

  # ---- Public state --------------------------------------------------------------------------

  @property
  def step(self) -> int:
    """The number of training steps taken (including those before a resume)."""
    return self._step

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
    """`(step, loss)` of every step reported so far (the most recent 100k)."""
    return list(self._metrics.losses)

  def lower_train_step(self) -> jax.stages.Lowered:
    """The train step lowered for the current state and batch shapes, inside the mesh and rules.

    For ahead-of-time inspection: `loop.lower_train_step().as_text()` is the StableHLO that
    runs, `.compile().memory_analysis()` its memory.
    """
    batch_sh = sharding.batch_sharding(self.mesh)
    batch = tuple(jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=batch_sh)
                  for s in self._batch_specs)
    with sharding.mesh_context(self.mesh, self.rules):
      return self._train_step.lower(self.state, batch)

  # ==== The hot loop ============================================================================

  def run(self, n_steps: int = 1) -> None:
    """Trains `n_steps` more steps, then evaluates and saves a checkpoint (with `output_dir`).

    Returns early, after saving, on SIGTERM or a multi-host preemption notice (`self.preempted`
    is then True). Raises `NonFiniteLossError` on a NaN/inf loss, saving nothing from that
    step on.
    """
    start, end = self._step, self._step + n_steps
    self.preempted = self._stop_requested = False
    for w in self._console_writers():
      w.total_steps = end
    progress = Progress(total_steps=end, batch_size=self._batch_specs[0].shape[0])
    progress.start(start)
    last_mark = time.monotonic()
    with (self._signals(), sharding.peer_failures(lambda: f"training step {self._step + 1}"),
          sharding.mesh_context(self.mesh, self.rules)):
      for step in range(start + 1, end + 1):
        batch = self._next_batch(step)
        self.state, metrics = self._train_step(self.state, batch)
        self._step = step
        self._metrics.add(step, metrics)
        if self._metrics.has_due:  # the previous chunk: its steps are done or nearly done
          self._report(progress, everything=False)
        if step % self._log_every == 0 or time.monotonic() - last_mark >= LOG_SECONDS:
          self._metrics.mark()  # every log_every steps, and at least every LOG_SECONDS
          last_mark = time.monotonic()
        if self._preemption(step):
          self._report(progress)
          self.save_checkpoint(wait=True)
          self.preempted = True
          log.warning("Preempted: saved step %d and stopped", step)
          break
        if self._checkpoint_every and step % self._checkpoint_every == 0 and step != end:
          self._check_metrics()
          if self._metrics.has_due:  # log what is due before the checkpoint: a crash after
            self._report(progress, everything=False)  # it must not lose those log lines
          with progress.pause():
            self.save_checkpoint()
        if step % self._eval_every == 0 and self._eval_tasks and step != end:
          with progress.pause():
            self.evaluate()
      else:
        self._report(progress)
        if self._eval_tasks and n_steps > 0:
          self.evaluate()
        self.save_checkpoint(wait=True)
    self._writer.flush()

  def _next_batch(self, step: int) -> tuple:
    try:
      if self._options.prefetch <= 0:
        return self._place_batch(self._task.next_batch())
      if self._prefetcher is None:
        self._prefetcher = Prefetcher(self._task.next_batch, self._place_batch,
                                      self._task.data_state, depth=self._options.prefetch)
      return next(self._prefetcher)
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

  def _data_position(self) -> Any:
    """The data state after the last batch trained on (not the ones read ahead)."""
    return self._prefetcher.position if self._prefetcher else self._task.data_state()

  def _preemption(self, step: int) -> bool:
    if self._stop_requested:
      return True
    if self.checkpointer is not None and jax.process_count() > 1:
      return self.checkpointer.reached_preemption(step)
    return False

  # ==== Metrics =================================================================================

  @contextlib.contextmanager
  def _non_finite_context(self) -> Iterator[None]:
    """Adds the last good checkpoint to a `NonFiniteLossError`."""
    try:
      yield
    except NonFiniteLossError as error:
      latest = None
      if self.checkpointer is not None:
        self.checkpointer.wait_until_finished()
        latest = self.checkpointer.latest_step()
      directory = self.checkpointer.directory if self.checkpointer else None
      raise NonFiniteLossError(error.step, error.value, latest, directory) from None

  def _check_metrics(self) -> None:
    with self._non_finite_context():
      self._metrics.check()

  def _report(self, progress: Progress, everything: bool = True) -> None:
    """Fetches pending training metrics (all, or the chunk that is due) and writes them."""
    with self._non_finite_context():
      chunk = self._metrics.take_all() if everything else self._metrics.take_due()
    if chunk is None:
      return
    step, values = chunk
    scalars = {f"train/{k}": v for k, v in values.items()}
    scalars.update(progress.measure(step))
    self._writer.write_scalars(step, scalars)

  def _console_writers(self) -> list[ConsoleWriter]:
    writers = self._writer.writers if isinstance(self._writer, MultiWriter) else [self._writer]
    return [w for w in writers if isinstance(w, ConsoleWriter)]

  def _write_summary(self, model_inputs: Sequence[jax.ShapeDtypeStruct],
                     resumed_from: int | None) -> None:
    if jax.process_index() != 0:
      return
    inputs = model_inputs[0] if len(model_inputs) == 1 else tuple(model_inputs)
    text = summary(self.model, inputs)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.state.params))
    text += f"\nMesh: {dict(self.mesh.shape)}; devices: {jax.device_count()}"
    if resumed_from is not None:
      text += f"\nResumed from step {resumed_from} ({self.checkpointer.directory})"
    self._writer.write_texts(self._step, {"model_summary": text})
    self._writer.write_scalars(self._step, {"num_params": n_params})
    if self.output_dir is not None:
      with open(os.path.join(self.output_dir, "model_summary.txt"), "w") as f:
        f.write(text + "\n")

  # ==== Evaluation ==============================================================================

  def evaluate(self) -> dict[str, float]:
    """Runs every `EvalTask` on the current state; writes and returns `{'eval/name': value}`."""
    results: dict[str, float] = {}
    with sharding.mesh_context(self.mesh, self.rules):
      for task, eval_step in zip(self._eval_tasks, self._eval_steps, strict=True):
        outputs = [eval_step(self.state, sharding.shard_batch(b, self.mesh))
                   for b in task.batches()]
        if not outputs:
          raise ConfigError("EvalTask produced no batches")
        fetched = jax.device_get(outputs)
        merged = fetched[0]
        for other in fetched[1:]:
          merged = merged.merge(other)
        for name, value in merged.compute().items():
          results[f"{task.export_prefix}/{name}"] = float(np.asarray(value))
    self._writer.write_scalars(self._step, results)
    self.eval_history.append((self._step, results))
    return results

  # ==== Checkpoints =============================================================================

  def save_checkpoint(self, wait: bool = False) -> None:
    """Saves the state and the data position at the current step (no-op without output_dir).

    Call it only with reported (finite) metrics: `run` does.
    """
    if self.checkpointer is None:
      return
    data_state = {"train": gather_json(self._data_position())}  # one entry per process
    self.checkpointer.save(self._step, self.state, data_state, force=True)
    if wait:
      self.checkpointer.wait_until_finished()

  def close(self) -> None:
    """Stops prefetching, waits for pending checkpoint writes and closes the writers."""
    if self._prefetcher is not None:
      self._prefetcher.close()
      self._task.set_data_state(self._prefetcher.position)  # rewind what was read ahead
      self._prefetcher = None
    try:
      if self.checkpointer is not None:
        self.checkpointer.close()
      self._writer.close()
    finally:
      if self._workdir_lock is not None:
        self._workdir_lock.release()

  def __enter__(self) -> Loop:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ==== Preemption ==============================================================================

  @contextlib.contextmanager
  def _signals(self) -> Iterator[None]:
    """SIGTERM asks the loop to save and stop at the next step (main thread, one process)."""
    if (not self._options.handle_signals or jax.process_count() > 1
        or threading.current_thread() is not threading.main_thread()):
      yield
      return

    def request_stop(signum, frame):
      del frame
      log.warning("Received signal %d: saving at the next step and stopping", signum)
      self._stop_requested = True

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
      yield
    finally:
      signal.signal(signal.SIGTERM, previous)
