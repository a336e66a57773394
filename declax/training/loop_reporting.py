"""Reporting a `Loop`'s training metrics: the intervals fetched off the hot path
(`declax.training.reporting`) are written with the progress numbers, and an error found in them
(a non-finite loss, a label or token id out of range) is raised with the last good checkpoint.

```python
with with_last_checkpoint(loop.checkpointer):
  check_metrics(buffers)                            # before a save: raises on a bad step
report_metrics(buffers, writer, progress, prefixes, loop.checkpointer)   # due intervals
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from declax.training.checkpoints import Checkpointer
from declax.training.id_checks import IdRangeError
from declax.training.metric_writers import ConsoleWriter, MetricWriter, MultiWriter
from declax.training.progress import Progress
from declax.training.reporting import MetricsBuffer, NonFiniteLossError
from declax.training.tasks import EvalTask

__all__ = ["check_metrics", "console_writers", "report_metrics", "with_last_checkpoint",
           "write_hparams"]


@contextlib.contextmanager
def with_last_checkpoint(checkpointer: Checkpointer | None) -> Iterator[None]:
  """Adds the last good checkpoint to a `NonFiniteLossError` or an `IdRangeError` (after the
  pending saves finish, so it is the newest one on disk)."""
  try:
    yield
  except IdRangeError as error:
    if checkpointer is None:
      raise
    checkpointer.wait_until_finished()
    raise error.with_checkpoint(checkpointer.latest_step(), checkpointer.directory) from None
  except NonFiniteLossError as error:
    latest = None
    if checkpointer is not None:
      checkpointer.wait_until_finished()
      latest = checkpointer.latest_step()
    directory = checkpointer.directory if checkpointer else None
    raise NonFiniteLossError(error.step, error.value, latest, directory,
                             getattr(error, "quantity", "loss")) from None


def check_metrics(buffers: Sequence[MetricsBuffer], checkpointer: Checkpointer | None) -> None:
  """Fetches every pending interval and raises on a bad step (called before a save)."""
  with with_last_checkpoint(checkpointer):
    for buffer in buffers:
      buffer.check()


def report_metrics(buffers: Sequence[MetricsBuffer], writer: MetricWriter, progress: Progress,
                   prefixes: Sequence[str], checkpointer: Checkpointer | None,
                   everything: bool = True) -> None:
  """Fetches pending training metrics (all, or the intervals that are due) and writes them,
  task `i`'s under `prefixes[i]` (`'train/'`, or `'train/<name>/'` with several tasks)."""
  for index, buffer in enumerate(buffers):
    if not everything and not buffer.has_due:
      continue
    with with_last_checkpoint(checkpointer):
      chunk = buffer.take_all() if everything else buffer.take_due()
    if chunk is None:
      continue
    step, values = chunk
    scalars = {f"{prefixes[index]}{k}": v for k, v in values.items()
               if not (k == "learning_rate" and np.isnan(v))}  # unknown rate: left out
    scalars.update(progress.measure(step))
    writer.write_scalars(step, scalars)


def console_writers(writer: MetricWriter) -> list[ConsoleWriter]:
  """The console writers in `writer` (one, or those of a `MultiWriter`)."""
  writers = writer.writers if isinstance(writer, MultiWriter) else [writer]
  return [w for w in writers if isinstance(w, ConsoleWriter)]


def write_hparams(writer: MetricWriter, hparams: Mapping[str, Any],
                  eval_tasks: Sequence[EvalTask]) -> None:
  """Writes the run's hyperparameters once, with the metrics they are compared on."""
  names = ["train/loss"] + [f"{t.export_prefix}/{n}" for t in eval_tasks for n in t.metric_names]
  if isinstance(writer, MultiWriter):
    writer.write_hparams(dict(hparams), metrics=names)
  else:
    writer.write_hparams(dict(hparams))
