"""Training metrics summed on the device in constant memory, fetched off the hot path.

Each train step merges its clu `Collection` into a running one (`Running`) inside the same jitted
call (clu's `merge`: sums and counts), and records the first step whose loss is not finite (and
the first label or token id out of range, `declax.training.id_checks`). So
the device holds one small accumulator whatever `log_every` is, and nothing is fetched per step.
At a log step the accumulator is set aside (`mark`) and a fresh one started; the set-aside one
is fetched one step later, while the device already runs the next step, or when the loop needs
the values (before a checkpoint, at the end of a run). A non-finite loss is reported with its
exact step before any checkpoint could store the state that followed it; so is an id out of
range (`IdRangeError`), first when both happen at one step, as it is the cause.
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from declax.errors import DeclaxError
from declax.training.id_checks import IdCheck, IdChecks, IdRangeError, Site

__all__ = ["MetricsBuffer", "NonFiniteInputError", "NonFiniteLossError", "Running",
           "accumulate", "check_finite_batch"]


class NonFiniteLossError(DeclaxError, FloatingPointError):
  """The training loss became NaN or infinite; `step` is the first step where it did.

  Nothing from that step on was saved: `last_checkpoint` (or None) is the newest good one.
  """

  def __init__(self, step: int, value: float, last_checkpoint: int | None = None,
               directory: str | None = None, quantity: str = "loss"):
    self.step, self.value, self.last_checkpoint = step, value, last_checkpoint
    self.quantity = quantity  # 'loss', or 'gradient norm' (a finite loss, a NaN/inf gradient)
    where = (f"; the last good checkpoint is step {last_checkpoint} in {directory}"
             if last_checkpoint is not None else "; no checkpoint was saved")
    super().__init__(f"training {quantity} is {value} at step {step}: stopping{where}. Lower the "
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


@struct.dataclass
class Running:
  """The metrics of the steps since the last log step, merged, on the device.

  - `metrics`: the steps' clu `Collection`s merged (`Average`: total and count; `LastValue`:
    the latest).
  - `bad_step`: the first of those steps whose loss or gradient norm was NaN or inf (-1:
    none), `bad_loss` its loss, and `bad_grad` its gradient norm (a finite loss with a NaN
    gradient, e.g. 0 * inf, would store NaN parameters just the same).
  - `bad_ids`: the first label or token id out of range (`IdCheck`; its step is -1: none).
  """

  metrics: Any
  bad_step: jax.Array
  bad_loss: jax.Array
  bad_grad: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.float32))
  bad_ids: IdCheck = struct.field(default_factory=IdCheck.none)

  @classmethod
  def empty(cls, collection: type) -> Running:
    return cls(collection.empty(), jnp.full((), -1, jnp.int32), jnp.zeros((), jnp.float32),
               jnp.zeros((), jnp.float32), IdCheck.none())

  def merge(self, later: Running) -> Running:
    """Both intervals as one (`later` follows `self`); the first bad step is kept."""
    earlier_bad = self.bad_step >= 0
    return Running(self.metrics.merge(later.metrics),
                   jnp.where(earlier_bad, self.bad_step, later.bad_step),
                   jnp.where(earlier_bad, self.bad_loss, later.bad_loss),
                   jnp.where(earlier_bad, self.bad_grad, later.bad_grad),
                   self.bad_ids.then(later.bad_ids))


def accumulate(running: Running, step: jax.Array, metrics: Any,
               ids: IdCheck | None = None) -> Running:
  """`running` with one more step's `metrics` (and id check) merged in (inside the jitted
  train step).

  ```python
  running = accumulate(Running.empty(TrainMetrics), state.step, metrics)
  ```
  """
  loss = metrics.loss.total / metrics.loss.count
  grad = getattr(metrics, "grad_norm", None)
  grad = grad.total / grad.count if grad is not None else jnp.zeros((), jnp.float32)
  first_bad = (running.bad_step < 0) & ~(jnp.isfinite(loss) & jnp.isfinite(grad))
  bad_ids = running.bad_ids if ids is None else running.bad_ids.then(ids)
  return Running(running.metrics.merge(metrics),
                 jnp.where(first_bad, jnp.asarray(step, jnp.int32), running.bad_step),
                 jnp.where(first_bad, loss.astype(jnp.float32), running.bad_loss),
                 jnp.where(first_bad, grad.astype(jnp.float32), running.bad_grad), bad_ids)


class MetricsBuffer:
  """The running accumulator of the train step, and the ones set aside to be reported.

  ```python
  state, buffer.running = train_step(state, buffer.running, batch)  # every step: no sync
  buffer.mark(step)                    # at a log step: set the interval aside, start afresh
  buffer.take_due()                    # a step later: -> (step, {'loss': ..., ...}) or None
  buffer.check()                       # before a checkpoint: fetch, raise on a NaN loss
  buffer.take_all()                    # at the end: everything pending
  ```
  """

  def __init__(self, collection: type, place: Any = None, history_size: int = 100_000,
               id_checks: IdChecks | None = None):
    self._collection = collection
    self._id_checks = id_checks  # the train step's, naming what an IdCheck found
    self._place = place or (lambda x: x)
    self.running: Running = self._fresh()
    self._running_steps = 0
    self._last_step = 0
    self._due: tuple[int, Any] | None = None
    self.losses: collections.deque[tuple[int, float]] = collections.deque(maxlen=history_size)

  def _fresh(self) -> Running:
    return self._place(Running.empty(self._collection))

  def add(self, step: int) -> None:
    """Notes that the train step ran step `step` (its metrics are in `running`)."""
    self._running_steps += 1
    self._last_step = step

  def mark(self) -> None:
    """Sets the steps so far aside for the next `take_due`, and starts a fresh accumulator."""
    if not self._running_steps:
      return
    self._due = self._merge_due((self._last_step, self.running))
    self.running, self._running_steps = self._fresh(), 0

  def _merge_due(self, new: tuple[int, Any]) -> tuple[int, Any]:
    if self._due is None:
      return new
    return new[0], self._fetch(self._due[1]).merge(self._fetch(new[1]))

  @property
  def has_due(self) -> bool:
    return self._due is not None

  def take_due(self) -> tuple[int, dict[str, float]] | None:
    due, self._due = self._due, None
    return self._summarise(due)

  def take_all(self) -> tuple[int, dict[str, float]] | None:
    """Everything pending, due or not (blocks until those steps are computed)."""
    self.mark()
    return self.take_due()

  def check(self) -> None:
    """Fetches what is pending (keeping it pending) and raises on a non-finite loss.

    Called before saving a checkpoint, so no state after a bad step is ever saved.
    """
    if self._due is not None:
      self._due = (self._due[0], self._fetch(self._due[1]))
    if self._running_steps:
      self._fetch(self.running)

  def _summarise(self, due: tuple[int, Any] | None) -> tuple[int, dict[str, float]] | None:
    if due is None:
      return None
    step, running = due
    values = {k: float(np.asarray(v)) for k, v in self._fetch(running).metrics.compute().items()}
    self.losses.append((step, values["loss"]))
    return step, values

  def _fetch(self, running: Running) -> Running:
    """`running` on the host (one transfer), or `IdRangeError` / `NonFiniteLossError` naming
    its first bad step."""
    return _fetch(running, self._id_checks)


def _fetch(running: Running, id_checks: IdChecks | None = None) -> Running:
  host = jax.device_get(running)
  ids, bad_step = host.bad_ids, int(host.bad_step)
  if int(ids.step) >= 0 and (bad_step < 0 or int(ids.step) <= bad_step):
    sites = id_checks.sites if id_checks is not None else []
    check = int(ids.check)
    site = sites[check] if check < len(sites) else Site(
        f"check {check}", "the model's classes or vocabulary", "ids", "config.model")
    raise IdRangeError("training", f"step {int(ids.step)}", site, int(ids.value),
                       int(ids.limit))
  if bad_step >= 0:
    if np.isfinite(float(host.bad_loss)):
      raise NonFiniteLossError(int(host.bad_step), float(host.bad_grad),
                               quantity="gradient norm")
    raise NonFiniteLossError(int(host.bad_step), float(host.bad_loss))
  return host
