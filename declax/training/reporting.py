"""Per-step training metrics kept on device and fetched in chunks, off the hot path.

The train step returns a small clu `Collection` per step. Fetching it right away would make the
host wait for the device every step, so `MetricsBuffer` only keeps references; a chunk is fetched
one step later (while the device already runs the next step), or when the loop needs the values
(before a checkpoint, at the end of a run). The chunk is stacked on device first, so fetching
it costs one transfer per metric field rather than one per step. Every step's loss is checked, so a
non-finite loss is reported with the exact step, before any checkpoint could store its state.
"""

from __future__ import annotations

import collections
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

from declax.errors import DeclaxError
from declax.training.step import WeightedAverage

__all__ = ["MetricsBuffer", "NonFiniteInputError", "NonFiniteLossError", "check_finite_batch"]


class NonFiniteLossError(DeclaxError, FloatingPointError):
  """The training loss became NaN or infinite; `step` is the first step where it did.

  Nothing from that step on was saved: `last_checkpoint` (or None) is the newest good one.
  """

  def __init__(self, step: int, value: float, last_checkpoint: int | None = None,
               directory: str | None = None):
    self.step, self.value, self.last_checkpoint = step, value, last_checkpoint
    where = (f"; the last good checkpoint is step {last_checkpoint} in {directory}"
             if last_checkpoint is not None else "; no checkpoint was saved")
    super().__init__(f"training loss is {value} at step {step}: stopping{where}. Lower the "
                     "learning rate, clip gradients (config.optimizer.clip_norm) or check the "
                     "data for NaNs.")


class NonFiniteInputError(NonFiniteLossError):
  """A training batch holds NaN or infinite values; the loop stopped before training on it.

  A `NonFiniteLossError` (the loss would be non-finite) whose cause was found in the inputs:
  `item` is the index of the bad array in the batch tuple, `counts` its `(n_nan, n_inf)`.
  """

  def __init__(self, item: int, description: str, counts: tuple[int, int],
               step: int | None = None, last_checkpoint: int | None = None,
               directory: str | None = None):
    self.item, self.description, self.counts = item, description, counts
    self.step, self.value, self.last_checkpoint = step, float("nan"), last_checkpoint
    at = f" at step {step}" if step is not None else ""
    where = (f"; the last good checkpoint is step {last_checkpoint} in {directory}"
             if last_checkpoint is not None else "")
    FloatingPointError.__init__(
        self, f"training inputs are non-finite{at}: item {item} of the batch ({description}) "
        f"has {counts[0]} NaN and {counts[1]} infinite values; stopped before training on "
        f"it{where}. Clean the data, or pass Loop(check_inputs=False) to train on it anyway.")

  def __reduce__(self):
    return (type(self), (self.item, self.description, self.counts, self.step,
                         self.last_checkpoint))


def check_finite_batch(batch: Any) -> Any:
  """Returns `batch` (a tuple of host arrays), or raises `NonFiniteInputError` if a floating
  item holds NaN or inf. Integer items (ids, labels) are not looked at."""
  from declax.layers.base import describe

  for index, item in enumerate(batch):
    array = np.asarray(item)
    if array.dtype.kind not in "fc" or np.isfinite(array).all():
      continue
    n_nan = int(np.isnan(array).sum())
    raise NonFiniteInputError(index, describe([array]), (n_nan, int(array.size
                              - np.isfinite(array).sum() - n_nan)))
  return batch


class MetricsBuffer:
  """Collects `(step, metrics)` on device; `fetch` returns merged host values.

  ```python
  buffer.add(step, metrics)            # every step: no device sync
  buffer.mark()                        # at a log step: the chunk so far is due
  buffer.take_due()                    # a step later: -> (last_step, {'loss': ..., ...}) or None
  buffer.check()                       # before a checkpoint: fetch all, raise on NaN loss
  buffer.take_all()                    # at the end: everything pending
  ```
  """

  def __init__(self, history_size: int = 100_000):
    self._pending: list[tuple[int, Any]] = []
    self._due: list[tuple[int, Any]] = []
    self.losses: collections.deque[tuple[int, float]] = collections.deque(maxlen=history_size)

  def add(self, step: int, metrics: Any) -> None:
    self._pending.append((step, metrics))

  def mark(self) -> None:
    """Makes everything added so far due for the next `take_due`."""
    self._due.extend(self._pending)
    self._pending = []

  @property
  def has_due(self) -> bool:
    return bool(self._due)

  def take_due(self) -> tuple[int, dict[str, float]] | None:
    chunk, self._due = self._due, []
    return self._summarise(chunk)

  def take_all(self) -> tuple[int, dict[str, float]] | None:
    """Everything pending, due or not (blocks until those steps are computed)."""
    chunk = self._due + self._pending
    self._due, self._pending = [], []
    return self._summarise(chunk)

  def check(self) -> None:
    """Fetches everything pending (keeping it pending) and raises on a non-finite loss.

    Called before saving a checkpoint, so no state after a bad step is ever saved.
    """
    for chunk in (self._due, self._pending):
      _fetch_in_place(chunk)

  def _summarise(self, chunk: list[tuple[int, Any]]) -> tuple[int, dict[str, float]] | None:
    if not chunk:
      return None
    _fetch_in_place(chunk)
    parts = [m for _, m in chunk]
    for part in parts:
      self.losses.extend(zip(part.steps, part.losses.tolist(), strict=True))
    merged = parts[0].merged if len(parts) == 1 else _merge_stacked(
        jax.tree.map(lambda *xs: np.stack(xs), *[p.merged for p in parts]))
    return chunk[-1][0], {k: float(np.asarray(v)) for k, v in merged.compute().items()}


# ------------------------------------------------------------------------------------------------
# Fetching many small per-step results at once
# ------------------------------------------------------------------------------------------------


class _Fetched:
  """A chunk of steps already on the host: their losses and their merged metrics."""

  def __init__(self, steps: list[int], losses: np.ndarray, merged: Any):
    self.steps, self.losses, self.merged = steps, losses, merged


@jax.jit
def _stack(metrics: list) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)


def _fetch_in_place(chunk: list[tuple[int, Any]]) -> None:
  """Replaces the not yet fetched entries of `chunk` (always its tail) by one `_Fetched`."""
  raw = [(s, m) for s, m in chunk if not isinstance(m, _Fetched)]
  if raw:
    chunk[len(chunk) - len(raw):] = [(raw[-1][0], _fetch(raw))]


def _fetch(chunk: list[tuple[int, Any]]) -> _Fetched:
  """Stacks a chunk's metrics on device (one dispatch), fetches them (one transfer per field),
  checks every step's loss and merges the chunk on the host."""
  steps = [s for s, _ in chunk]
  metrics = [m for _, m in chunk]
  bucket = 1 << (len(metrics) - 1).bit_length()  # few distinct lengths -> few compilations
  stacked = jax.device_get(_stack(metrics + [metrics[-1]] * (bucket - len(metrics))))
  stacked = jax.tree.map(lambda x: x[: len(metrics)], stacked)
  loss = stacked.loss
  losses = np.asarray(loss.total, np.float64) / np.asarray(loss.count, np.float64)
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise NonFiniteLossError(steps[bad[0]], float(losses[bad[0]]))
  return _Fetched(steps, losses, _merge_stacked(stacked))


def _merge_stacked(stacked: Any) -> Any:
  """Merges a clu `Collection` stacked over steps (leading axis) into one, on the host.

  Averages add up their fields; `LastValue` keeps the last step; other metrics are merged one
  by one with their own `merge`.
  """
  fields = {}
  for name, metric in vars(stacked).items():
    if name == "_reduction_counter" or isinstance(metric, clu_metrics.LastValue):
      fields[name] = jax.tree.map(lambda x: x[-1], metric)
    elif isinstance(metric, (clu_metrics.Average, WeightedAverage)):
      fields[name] = jax.tree.map(lambda x: x.sum(axis=0), metric)
    else:
      n = len(jax.tree.leaves(metric)[0])
      items = [jax.tree.map(lambda x, i=i: x[i], metric) for i in range(n)]
      fields[name] = functools.reduce(lambda a, b: a.merge(b), items)
  return type(stacked)(**fields)
