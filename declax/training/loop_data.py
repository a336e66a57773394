"""Feeding a `Loop`: each task's training batches read (ahead, in grain's prefetch thread),
checked for NaN/inf on the host and placed on the mesh, and the data positions a checkpoint
stores (after the last batch trained on, not the ones read ahead).

```python
feeder = BatchFeeder(tasks, mesh, prefetch=2, check_inputs=True)
batch = feeder.next(0, step, checkpointer)   # task 0's next batch, on the mesh
position = feeder.position(0)                # for the checkpoint of this step
feeder.close()                               # stops the threads, rewinds what was read ahead
```
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from grain.experimental import ThreadPrefetchDatasetIterator
from jax.sharding import Mesh

from declax import sharding
from declax.training.checkpoints import Checkpointer
from declax.training.config_schema import ConfigError
from declax.training.reporting import NonFiniteInputError, check_finite_batch
from declax.training.tasks import PlacedBatches, TrainTask

__all__ = ["BatchFeeder", "gather_json", "local_position"]

log = logging.getLogger(__name__)


class BatchFeeder:
  """The training batches of a Loop's `tasks` on `mesh`: `prefetch` batches read ahead per task
  (0: read in the training thread), each checked for NaN/inf first with `check_inputs`."""

  def __init__(self, tasks: Sequence[TrainTask], mesh: Mesh, prefetch: int,
               check_inputs: bool):
    self._tasks, self._mesh = tasks, mesh
    self._prefetch, self._check_inputs = prefetch, check_inputs
    self._prefetchers: dict[int, ThreadPrefetchDatasetIterator] = {}

  def next(self, index: int, step: int, checkpointer: Checkpointer | None) -> tuple:
    """Task `index`'s batch for `step`, placed on the mesh. A non-finite batch raises
    `NonFiniteInputError` naming the step and `checkpointer`'s last good checkpoint."""
    task = self._tasks[index]
    try:
      if self._prefetch <= 0:
        return self._place(task.next_batch())
      if index not in self._prefetchers:  # grain's thread reads and places batches ahead
        self._prefetchers[index] = ThreadPrefetchDatasetIterator(
            PlacedBatches(task, self._place), self._prefetch)
      return next(self._prefetchers[index])
    except StopIteration:
      raise ConfigError(f"the TrainTask's labeled_data ran out of batches at step {step}; "
                       "training data must be an endless iterator (num_epochs=None)") from None
    except NonFiniteInputError as error:
      latest = directory = None
      if checkpointer is not None:
        checkpointer.wait_until_finished()
        latest, directory = checkpointer.latest_step(), checkpointer.directory
      raise NonFiniteInputError(error.item, error.description, error.counts, step, latest,
                                directory) from None

  def _place(self, batch: Any) -> tuple:
    """Checks a host batch (`check_inputs`) and places it on the mesh."""
    if self._check_inputs:
      check_finite_batch(batch)
    return sharding.shard_batch(batch, self._mesh)

  def position(self, index: int) -> Any:
    """Task `index`'s data state after the last batch trained on (not the ones read ahead)."""
    prefetcher = self._prefetchers.get(index)  # its state: after the batch handed out last
    return prefetcher.get_state() if prefetcher else self._tasks[index].data_state()

  def close(self) -> None:
    """Stops prefetching and rewinds each task's data to after its last batch trained on."""
    for index, prefetcher in self._prefetchers.items():
      position = prefetcher.get_state()
      prefetcher.close()
      self._tasks[index].set_data_state(position)  # rewind what was read ahead
    self._prefetchers = {}


def gather_json(value: Any) -> list[Any]:
  """`[value of process 0, value of process 1, ...]` for a JSON-serialisable value.

  Every process feeds its own shard of the data, so every process has its own iterator
  position; Orbax writes JSON items from the primary process only, so they are gathered first.
  (A collective: all processes must call it together, as they do when saving.)
  """
  if jax.process_count() == 1:
    return [value]
  from jax.experimental import multihost_utils

  encoded = np.frombuffer(json.dumps(value).encode(), np.uint8)
  longest = int(np.max(multihost_utils.process_allgather(np.int32(len(encoded)))))
  padded = np.zeros(longest, np.uint8)
  padded[: len(encoded)] = encoded
  gathered = multihost_utils.process_allgather(padded)
  return [json.loads(bytes(row).rstrip(b"\0").decode()) for row in np.asarray(gathered)]


def local_position(saved: Any) -> Any:
  """This process's entry of a `gather_json` list (None, with a warning, if the number of
  processes changed since the checkpoint was written)."""
  if not isinstance(saved, list):
    return saved
  if len(saved) != jax.process_count():
    log.warning("The checkpoint holds data positions of %d processes, this run has %d: the "
                "training data starts from its beginning, not where the checkpoint stopped",
                len(saved), jax.process_count())
    return None
  return saved[jax.process_index()]
