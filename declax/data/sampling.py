"""Which examples go into batch number `step`: sharding, seeded per-epoch shuffling, batching.

Done on whole index arrays with numpy rather than with grain's per-element `shuffle`/`batch`
(measured on 2 cores: ~1.5M vs ~150k examples/s), and exposed to grain as a `MapDataset` over
batch numbers, so grain's iterator state (`next_index`) pins the position exactly.
"""

from __future__ import annotations

import threading

import numpy as np


def resolve_shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
  """`(shard_index, shard_count)`, defaulting to `(jax.process_index(), jax.process_count())`."""
  if (shard_index is None) != (shard_count is None):
    raise ValueError("pass both shard_index and shard_count, or neither")
  if shard_index is None:
    import jax

    return jax.process_index(), jax.process_count()
  return shard_index, shard_count


def shard_indices(num_examples: int, shard_index: int, shard_count: int) -> np.ndarray:
  """Example ids of one shard: every `shard_count`-th id from `shard_index`, all shards equally
  long (up to `shard_count - 1` trailing examples are dropped), so every process yields the same
  number of batches.

  >>> shard_indices(7, 1, 2).tolist()
  [1, 3, 5]
  """
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
  per_shard = num_examples // shard_count
  return np.arange(per_shard * shard_count)[shard_index::shard_count]


class EpochBatches:
  """Maps a global batch number to the example ids of that batch.

  Each epoch is a permutation of `indices` drawn from `default_rng([seed, epoch])` (or the
  stored order when `shuffle=False`), cut into batches; batches never span epochs, and with
  `drop_remainder` each epoch's last partial batch is dropped. Ids within a batch are sorted,
  which makes on-disk reads local and leaves the batch's contents unchanged.

  >>> EpochBatches(np.arange(5), 2, shuffle=False, drop_remainder=True)(2).tolist()
  [0, 1]
  """

  def __init__(
      self, indices: np.ndarray, batch_size: int, *, seed: int = 0, shuffle: bool = True,
      drop_remainder: bool = True,
  ):  # fmt: skip
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.indices = np.asarray(indices)
    self.batch_size = batch_size
    self.seed = seed
    self.shuffle = shuffle
    n = len(self.indices)
    self.batches_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
    if self.batches_per_epoch == 0:
      raise ValueError(
          f"{n} examples per shard give no batch of {batch_size} "
          "(use a smaller batch_size or drop_remainder=False)"
      )
    if seed < 0:
      raise ValueError(f"seed must be >= 0, got {seed}")
    self._lock = threading.Lock()
    self._orders: dict[int, np.ndarray] = {}  # the last two epochs (prefetch spans a boundary)

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The example ids of `epoch` in visiting order."""
    if not self.shuffle:
      return self.indices
    with self._lock:
      if epoch not in self._orders:
        rng = np.random.default_rng([self.seed, epoch])
        self._orders[epoch] = self.indices[rng.permutation(len(self.indices))]
        while len(self._orders) > 2:  # forget the oldest computed
          del self._orders[next(iter(self._orders))]
      return self._orders[epoch]

  def __call__(self, step: int) -> np.ndarray:
    epoch, j = divmod(int(step), self.batches_per_epoch)
    order = self.epoch_order(epoch)
    return np.sort(order[j * self.batch_size : (j + 1) * self.batch_size])
