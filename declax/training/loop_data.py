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

from collections.abc import Sequence
from typing import Any

from grain.experimental import ThreadPrefetchDatasetIterator
from jax.sharding import Mesh

from declax import sharding
from declax.training.checkpoints import Checkpointer
from declax.training.config_schema import ConfigError
from declax.training.reporting import NonFiniteInputError, check_finite_batch
from declax.training.tasks import PlacedBatches, TrainTask

__all__ = ["BatchFeeder"]


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
