"""Throughput and time-to-go, measured between log points (clu's `ReportProgress`, without TF)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

__all__ = ["Progress"]


class Progress:
  """Steps per second, examples per second and ETA between successive `measure` calls.

  ```python
  progress = Progress(total_steps=1000, batch_size=128)
  progress.start(step=0)
  ... train to step 100 ...
  progress.measure(100)   # {'steps_per_sec': 41.0, 'examples_per_sec': 5248.0} (compiling)
  ... train to step 200 ...
  progress.measure(200)   # {'steps_per_sec': 412.0, 'examples_per_sec': 52736.0,
                          #  'eta_seconds': 1.9}
  ```

  Time spent in `pause()` blocks (evaluation, checkpointing) is left out of the rates. The first
  interval after `start` includes compilation: its rates are reported, but no ETA (it would
  overstate the time to go); the ETA starts with the second interval.
  """

  def __init__(self, total_steps: int | None = None, batch_size: int | None = None,
               clock: Callable[[], float] = time.perf_counter):
    self.total_steps = total_steps
    self.batch_size = batch_size
    self._clock = clock
    self._last_step: int | None = None
    self._last_time = 0.0
    self._paused = 0.0
    self._first_interval = True

  def start(self, step: int) -> None:
    self._last_step, self._last_time, self._paused = step, self._clock(), 0.0
    self._first_interval = True

  @contextlib.contextmanager
  def pause(self) -> Iterator[None]:
    """A context manager whose duration is not counted as training time."""
    start = self._clock()
    try:
      yield
    finally:
      self._paused += self._clock() - start

  def measure(self, step: int) -> dict[str, float]:
    """Rates since the previous `measure` (or `start`), and the ETA to `total_steps`."""
    now = self._clock()
    if self._last_step is None:
      self.start(step)
      return {}
    elapsed = max(now - self._last_time - self._paused, 1e-9)
    steps = step - self._last_step
    self._last_step, self._last_time, self._paused = step, now, 0.0
    if steps <= 0:
      return {}
    first, self._first_interval = self._first_interval, False
    rate = steps / elapsed
    out = {"steps_per_sec": rate}
    if self.batch_size:
      out["examples_per_sec"] = rate * self.batch_size
    if self.total_steps is not None and not first:
      out["eta_seconds"] = max(self.total_steps - step, 0) / rate
    return out

