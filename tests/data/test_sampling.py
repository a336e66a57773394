"""Sharding and per-epoch shuffled batches of example ids."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from declax.data.sampling import EpochBatches, resolve_shard, shard_indices


@given(n=st.integers(0, 500), count=st.integers(1, 8))
def test_shards_are_disjoint_equal_and_cover_all_but_a_remainder(n, count):
  shards = [shard_indices(n, i, count) for i in range(count)]
  assert len({len(s) for s in shards}) == 1
  ids = np.concatenate(shards)
  assert len(ids) == len(set(ids.tolist())) == n - n % count


def test_shard_arguments_are_checked():
  with pytest.raises(ValueError, match="shard_index < shard_count"):
    shard_indices(10, 2, 2)
  with pytest.raises(ValueError, match="both"):
    resolve_shard(0, None)
  assert resolve_shard(None, None) == (0, 1)  # jax.process_index()/process_count()


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 300), bs=st.integers(1, 64), seed=st.integers(0, 2**31),
    drop=st.booleans(), shuffle=st.booleans(),
)  # fmt: skip
def test_each_epoch_visits_each_example_once(n, bs, seed, drop, shuffle):
  if drop and n < bs:
    with pytest.raises(ValueError, match="no batch"):
      EpochBatches(np.arange(n), bs, drop_remainder=drop)
    return
  eb = EpochBatches(np.arange(n) * 3, bs, seed=seed, shuffle=shuffle, drop_remainder=drop)
  for epoch in range(2):
    steps = range(epoch * eb.batches_per_epoch, (epoch + 1) * eb.batches_per_epoch)
    batches = [eb(s) for s in steps]
    assert all(np.all(np.diff(b) > 0) for b in batches)  # sorted, no repeats
    ids = np.concatenate(batches)
    assert len(set(ids.tolist())) == len(ids) == (n - n % bs if drop else n)
    assert set(ids.tolist()) <= set((np.arange(n) * 3).tolist())


def test_epochs_are_reshuffled_deterministically():
  a = EpochBatches(np.arange(100), 10, seed=1)
  b = EpochBatches(np.arange(100), 10, seed=1)
  c = EpochBatches(np.arange(100), 10, seed=2)
  assert all(np.array_equal(a(s), b(s)) for s in range(30))
  assert not all(np.array_equal(a(s), c(s)) for s in range(10))
  assert not all(np.array_equal(a(s), a(s + 10)) for s in range(10))  # epoch 1 != epoch 0
  unshuffled = EpochBatches(np.arange(100), 10, shuffle=False)
  assert unshuffled(13).tolist() == list(range(30, 40))
