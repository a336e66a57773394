"""Step callbacks (Trax's `TrainingStepCallback`), early stopping, profiling and step schedules.

A callback is made by the `Loop` from a class (or any `loop -> callback` factory, e.g. a
`functools.partial`), as Trax's `Loop(callbacks=[...])` does. Around every step `s` for which
`call_at(s)` is true, the loop calls `on_step_begin(s)` before the step and `on_step_end(s)`
after it, once the step's evaluation and checkpoint (if due) are done, so a callback sees them.

```python
import functools
from declax.training.callbacks import EarlyStopping

loop = Loop(model, task, eval_tasks=[eval_task],
            callbacks=[functools.partial(EarlyStopping, metric='eval/loss', patience=3)])
```
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import jax

from declax.training.config_schema import ConfigError

__all__ = ["EarlyStopping", "ProfileSteps", "TrainingStepCallback", "at_every", "make_callbacks",
           "never"]

log = logging.getLogger(__name__)


def at_every(period: int | None) -> Callable[[int], bool]:
  """`step -> step % period == 0` (never when `period` is None), for `eval_at` and friends."""
  if period is None:
    return never
  if period < 1:
    raise ConfigError(f"a step period must be >= 1 or None, got {period}")
  return lambda step: step % period == 0


def never(step: int) -> bool:
  """`step -> False`."""
  del step
  return False


class TrainingStepCallback:
  """Called before and after training steps (Trax's interface; `self.loop` is the `Loop`).

  Subclasses override `call_at(step)`, `on_step_begin(step)` and `on_step_end(step)`; the
  defaults call at every step and do nothing.
  """

  def __init__(self, loop: Any):
    self.loop = loop
    self._loop = loop  # Trax's attribute name

  def call_at(self, step: int) -> bool:
    return True

  def on_step_begin(self, step: int) -> None:
    pass

  def on_step_end(self, step: int) -> None:
    pass


class EarlyStopping(TrainingStepCallback):
  """Stops training when `metric` (from the loop's evaluations) has not improved for
  `patience` evaluations; the run ends as usual (final evaluation skipped if just done, a
  checkpoint saved) and `loop.stopped_early` is True.

  **Arguments**: `metric` (e.g. `'eval/loss'`), `mode` (`'min'` or `'max'`), `patience`
  (evaluations without improvement), `min_delta` (the smallest change that counts).
  """

  def __init__(self, loop: Any, metric: str = "eval/loss", mode: str = "min",
               patience: int = 5, min_delta: float = 0.0):
    super().__init__(loop)
    if mode not in ("min", "max"):
      raise ConfigError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
    if patience < 1:
      raise ConfigError(f"EarlyStopping: patience must be >= 1, got {patience}")
    self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
    self.best, self.bad_evals, self._seen = math.inf if mode == "min" else -math.inf, 0, 0

  def call_at(self, step: int) -> bool:
    return len(self.loop.eval_history) > self._seen

  def on_step_end(self, step: int) -> None:
    for _, results in self.loop.eval_history[self._seen:]:
      if self.metric not in results:
        from declax.errors import did_you_mean

        raise ConfigError(f"EarlyStopping: no evaluation metric {self.metric!r} (the "
                          f"evaluations give {', '.join(sorted(results))})"
                          f"{did_you_mean(self.metric, list(results))}")
      value = results[self.metric]
      better = (value < self.best - self.min_delta if self.mode == "min"
                else value > self.best + self.min_delta)
      self.best, self.bad_evals = (value, 0) if better else (self.best, self.bad_evals + 1)
    self._seen = len(self.loop.eval_history)
    if self.bad_evals >= self.patience:
      log.warning("Early stopping at step %d: %s has not improved for %d evaluations (best "
                  "%.6g)", step, self.metric, self.bad_evals, self.best)
      self.loop.stop()


class ProfileSteps(TrainingStepCallback):
  """Writes a `jax.profiler` trace of steps `first` to `last` (inclusive) into `logdir`
  (TensorBoard's profile plugin reads `logdir/plugins/profile/<run>/`)."""

  def __init__(self, loop: Any, first: int, last: int, logdir: str):
    super().__init__(loop)
    if not 1 <= first <= last:
      raise ConfigError(f"profile_steps must be (first, last) with 1 <= first <= last, got "
                        f"({first}, {last})")
    self.first, self.last, self.logdir, self.active = first, last, logdir, False

  def call_at(self, step: int) -> bool:
    return step == self.first or (self.active and step == self.last)

  def on_step_begin(self, step: int) -> None:
    if step == self.first and not self.active:
      os.makedirs(self.logdir, exist_ok=True)
      jax.profiler.start_trace(self.logdir)
      self.active = True

  def on_step_end(self, step: int) -> None:
    if self.active and step == self.last:
      jax.block_until_ready(self.loop.state)  # the window's device work belongs in the trace
      jax.profiler.stop_trace()
      self.active = False
      log.info("Wrote a profile of steps %d-%d to %s", self.first, self.last, self.logdir)

  def close(self) -> None:
    """Ends a trace cut short (the run stopped inside the window)."""
    if self.active:
      jax.profiler.stop_trace()
      self.active = False


def make_callbacks(loop: Any, factories: Any, profile_steps: Any,
                   output_dir: str | None) -> list:
  """The `Loop`'s callbacks: one per `loop -> callback` factory (or class), then `ProfileSteps`
  for `profile_steps=(first, last)`, which traces into `output_dir/tensorboard`."""
  callbacks = [make(loop) for make in (factories or [])]
  if profile_steps is not None:
    if output_dir is None:
      raise ConfigError("profile_steps needs an output_dir (the trace goes to its "
                        "tensorboard folder)")
    first, last = profile_steps
    callbacks.append(ProfileSteps(loop, int(first), int(last),
                                  os.path.join(output_dir, "tensorboard")))
  return callbacks
