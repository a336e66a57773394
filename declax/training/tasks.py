"""What to train on and what to measure: Trax's `TrainTask` and `EvalTask`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import optax

from declax.training.config_schema import ConfigError

__all__ = ["EvalTask", "PlacedBatches", "TrainTask"]


def _has_state(data: Any) -> bool:
  return callable(getattr(data, "get_state", None)) and callable(getattr(data, "set_state", None))


class _Batches:
  """An iterator of batches that can be peeked at and, when it supports it, saved and restored."""

  def __init__(self, data: Iterable):
    self._source = data if isinstance(data, Iterator) else iter(data)
    self._iterator: Iterator = self._source
    self._peeked: list = []

  def peek(self) -> tuple:
    """The next batch, without consuming it."""
    if _has_state(self._source):
      position = self._source.get_state()
      batch = next(self._source)
      self._source.set_state(position)
      return tuple(batch)
    if not self._peeked:
      self._peeked.append(next(self._source))
      self._iterator = itertools.chain(self._peeked, self._source)
    return tuple(self._peeked[0])

  def __next__(self) -> tuple:
    return tuple(next(self._iterator))

  @property
  def checkpointable(self) -> bool:
    return _has_state(self._source)

  def get_state(self) -> Any:
    return self._source.get_state() if self.checkpointable else None

  def set_state(self, state: Any) -> None:
    if state is not None and self.checkpointable:
      self._source.set_state(state)


class TrainTask:
  """A training task: labeled data, the loss to minimise and the optimizer that minimises it.

  ```python
  task = TrainTask(make_pipeline('declax_digits', 'train', 128), tl.CrossEntropyLoss(),
                   optax.adam(1e-3), n_steps_per_checkpoint=500)
  ```

  **Arguments**
  - `labeled_data`: an iterator (or iterable) of batch tuples `(inputs..., targets[, weights])`
    of numpy arrays, this process's rows. With `get_state()`/`set_state()` (e.g. a
    `declax.data.Pipeline`) its position is saved in checkpoints and restored on resume.
  - `loss_layer`: a parameter-free layer; the loss is `Serial(model, loss_layer)` on the batch.
  - `optimizer`: any `optax.GradientTransformation` (`declax.training.make_optimizer` builds one
    from config values, with the learning rate logged from its state).
  - `lr_schedule`: `step -> learning rate`, only used to log the learning rate of optimizers that
    do not carry it in their state (optax optimizers take their schedule at construction).
  - `n_steps_per_checkpoint`: save a checkpoint every this many steps (with an `output_dir`).
  - `n_steps_per_permanent_checkpoint`: keep every this many steps' checkpoint for good
    (task 0's sets the `Loop`'s default `permanent_checkpoint_at`; None: none).
  - `sample_batch`: a batch to take shapes from; default: the first batch (peeked, not consumed).
  - `export_prefix`: with several tasks, the task's metrics are reported as
    `train/<export_prefix>/loss` (default `task<index>`).
  """

  def __init__(self, labeled_data: Iterable, loss_layer: Any,
               optimizer: optax.GradientTransformation,
               lr_schedule: Callable[[Any], Any] | None = None,
               n_steps_per_checkpoint: int | None = 100,
               n_steps_per_permanent_checkpoint: int | None = None, *,
               sample_batch: Sequence | None = None, export_prefix: str | None = None):
    if not isinstance(optimizer, optax.GradientTransformation):
      raise TypeError(f"TrainTask: optimizer must be an optax.GradientTransformation, got "
                      f"{type(optimizer).__name__}")
    if n_steps_per_checkpoint is not None and n_steps_per_checkpoint < 1:
      raise ConfigError(f"n_steps_per_checkpoint must be >= 1 or None, got "
                       f"{n_steps_per_checkpoint}")
    self._batches = _Batches(labeled_data)
    self.labeled_data = labeled_data
    self.loss_layer = loss_layer
    self.optimizer = optimizer
    self.lr_schedule = lr_schedule
    self.n_steps_per_checkpoint = n_steps_per_checkpoint
    self.n_steps_per_permanent_checkpoint = n_steps_per_permanent_checkpoint
    self.export_prefix = export_prefix
    self._sample_batch = tuple(sample_batch) if sample_batch is not None else None

  def name(self, index: int) -> str:
    """The name its metrics are reported under when it is task `index` of several."""
    return self.export_prefix or f"task{index}"

  @property
  def sample_batch(self) -> tuple:
    if self._sample_batch is None:
      self._sample_batch = self._batches.peek()
    return self._sample_batch

  def next_batch(self) -> tuple:
    return next(self._batches)

  def data_state(self) -> Any:
    """The data iterator's position (JSON), or None if it cannot be saved."""
    return self._batches.get_state()

  def set_data_state(self, state: Any) -> None:
    self._batches.set_state(state)

  @property
  def data_checkpointable(self) -> bool:
    return self._batches.checkpointable


class EvalTask:
  """An evaluation task: labeled data and the metrics to report on it.

  ```python
  task = EvalTask(lambda: test_pipeline_from_start(), [tl.CrossEntropyLoss(), tl.Accuracy()],
                  metric_names=['loss', 'accuracy'], n_eval_batches=None)
  ```

  **Arguments**
  - `labeled_data`: an iterator of batch tuples (each evaluation takes the next
    `n_eval_batches`), or a zero-argument callable returning a fresh iterator for every
    evaluation (the same batches each time).
  - `metrics`: parameter-free layers applied to `(model outputs..., targets[, weights])`.
  - `metric_names`: names to report them under (default: the layers' printed names).
  - `n_eval_batches`: batches per evaluation; None runs until the iterator is exhausted.
  - `export_prefix`: prefix of the reported names (default `'eval'`: `eval/accuracy`).

  Per-batch values are averaged weighted by each batch's total weight (its weights item, else
  its size), so an evaluation over a whole split gives the split's metric.
  """

  def __init__(self, labeled_data: Iterable | Callable[[], Iterable], metrics: Sequence[Any],
               metric_names: Sequence[str] | None = None, n_eval_batches: int | None = 1, *,
               sample_batch: Sequence | None = None, export_prefix: str = "eval"):
    metrics = list(metrics)
    if not metrics:
      raise ConfigError("EvalTask needs at least one metric layer")
    names = list(metric_names) if metric_names is not None else [m.label for m in metrics]
    if len(names) != len(metrics):
      raise ConfigError(f"EvalTask: {len(metrics)} metrics but {len(names)} metric_names")
    if len(set(names)) != len(names):
      raise ConfigError(f"EvalTask: metric names must be unique, got {names} (pass "
                       "metric_names=...)")
    if n_eval_batches is not None and n_eval_batches < 1:
      raise ConfigError(f"n_eval_batches must be >= 1 or None, got {n_eval_batches}")
    self.metrics = metrics
    self.metric_names = names
    self.n_eval_batches = n_eval_batches
    self.export_prefix = export_prefix
    is_factory = callable(labeled_data) and not isinstance(labeled_data, Iterator)
    self._factory = labeled_data if is_factory else None
    self._batches = None if self._factory else _Batches(labeled_data)
    self.labeled_data = labeled_data
    self._sample_batch = tuple(sample_batch) if sample_batch is not None else None

  @property
  def sample_batch(self) -> tuple:
    if self._sample_batch is None:
      source = self._batches if self._batches is not None else _Batches(self._factory())
      self._sample_batch = source.peek()
    return self._sample_batch

  def batches(self) -> Iterator[tuple]:
    """The batches of one evaluation."""
    source = self._batches if self._batches is not None else _Batches(self._factory())
    count = itertools.count() if self.n_eval_batches is None else range(self.n_eval_batches)
    for _ in count:
      try:
        yield next(source)
      except StopIteration:
        if self.n_eval_batches is not None and self._factory is None:
          raise ConfigError("EvalTask: labeled_data ran out of batches; pass an endless "
                           "iterator or a callable that returns a fresh one") from None
        return


class PlacedBatches:
  """A task's batches, checked and placed on the mesh, with the task's data position: what
  grain's `ThreadPrefetchDatasetIterator` reads ahead in its thread. It records the position
  after each batch, so a checkpoint stores that of the last batch trained on."""

  def __init__(self, task: TrainTask, place: Callable[[Any], tuple]):
    self._task, self._place = task, place

  def __iter__(self) -> PlacedBatches:
    return self

  def __next__(self) -> tuple:
    return self._place(self._task.next_batch())

  def get_state(self) -> Any:
    return self._task.data_state()

  def set_state(self, state: Any) -> None:
    self._task.set_data_state(state)
