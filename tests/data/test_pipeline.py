"""make_pipeline: batches, determinism, sharding, epochs and exact resume from saved state."""

import itertools
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

import declax.data as dd

ONE = {"shard_index": 0, "shard_count": 1}


def _take(it, k):
  return list(itertools.islice(it, k))


def _same(a, b) -> bool:
  """Batch lists equal bitwise (same length, same arrays)."""
  if len(a) != len(b):
    return False
  pairs = [(u, v) for x, y in zip(a, b, strict=True) for u, v in zip(x, y, strict=True)]
  return all(np.array_equal(u, v) and u.dtype == v.dtype for u, v in pairs)


def _indexed_source(n):
  """Fake digits whose label is the example's index (via tfds.testing.mock_data)."""
  examples = [{"image": np.full((8, 8, 1), i % 17, np.uint8), "label": i} for i in range(n)]
  return tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: examples)


def _ids(batches):
  return np.concatenate([b[1] for b in batches]).tolist()


# ---------------------------------------------------------------- real data


def test_digits_batches(data_dir):
  p = dd.make_pipeline("declax_digits", "train", 32, data_dir=data_dir, **ONE)
  x, y = next(p)
  assert isinstance(next(p), tuple)
  assert (x.shape, x.dtype, y.shape, y.dtype) == ((32, 8, 8, 1), np.float32, (32,), np.int32)
  assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
  assert set(y.tolist()) <= set(range(10))
  assert (p.batches_per_epoch, p.num_examples, p.spec.n_classes) == (44, 1437, 10)


def test_pysrc_lm_batches(data_dir):
  p = dd.make_pipeline("declax_pysrc", "validation", 16, data_dir=data_dir, **ONE)
  x, y, w = next(p)
  assert x.shape == y.shape == w.shape == (16, 128)
  assert np.array_equal(x, y) and x.dtype == np.int32 and w.dtype == np.float32
  np.testing.assert_array_equal(w, (y != 0).astype(np.float32))
  q = dd.make_pipeline("declax_pysrc/seq128", "validation", 16, data_dir=data_dir, **ONE)
  assert _same([next(q)], [(x, y, w)])
  x, y, w = next(dd.make_pipeline(
      "declax_pysrc", "validation", 16, data_dir=data_dir, lm_format="shifted", **ONE
  ))  # fmt: skip
  np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_same_seed_same_batches_other_seed_not(data_dir):
  def make(seed, **kw):
    return dd.make_pipeline("declax_digits", "train", 64, seed=seed, data_dir=data_dir, **kw)

  first = _take(make(3, **ONE), 30)  # 30 > 22 batches per epoch: crosses an epoch boundary
  assert _same(first, _take(make(3, **ONE), 30))
  assert not _same(first[:3], _take(make(4, **ONE), 3))
  unshuffled = _take(make(3, shuffle=False, **ONE), 2)
  x_all, _ = dd.load_split_arrays("declax_digits", "train", data_dir)
  np.testing.assert_array_equal(unshuffled[1][0], x_all[64:128])


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("declax_digits", {}), ("declax_pysrc", {"read_options": None, "in_memory": False})],
)
def test_resume_from_saved_state_is_exact(data_dir, name, kwargs):
  def make():
    return dd.make_pipeline(name, "train", 128, seed=7, data_dir=data_dir, **ONE, **kwargs)

  p = make()
  _take(p, 9)  # digits: 11 batches per epoch, so the m batches below span an epoch boundary
  state = json.loads(json.dumps(p.get_state()))  # what orbax's JsonSave stores
  expected = _take(p, 5)
  q = make()
  next(q)  # position elsewhere first
  q.set_state(state)
  assert _same(_take(q, 5), expected)
  p.close()
  q.close()


def test_state_round_trips_through_orbax_json(data_dir, tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  p = dd.make_pipeline("declax_digits", "train", 32, data_dir=data_dir, **ONE)
  _take(p, 4)
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    mngr.save(4, args=ocp.args.Composite(data=ocp.args.JsonSave(p.get_state())))
    mngr.wait_until_finished()
    restored = mngr.restore(4, args=ocp.args.Composite(data=ocp.args.JsonRestore()))
  q = dd.make_pipeline("declax_digits", "train", 32, data_dir=data_dir, **ONE)
  q.set_state(restored.data)
  assert _same(_take(q, 2), _take(p, 2))


def test_state_from_other_arguments_is_refused(data_dir):
  p = dd.make_pipeline("declax_digits", "train", 32, data_dir=data_dir, **ONE)
  _take(p, 3)
  q = dd.make_pipeline("declax_digits", "train", 16, data_dir=data_dir, **ONE)
  with pytest.raises(ValueError, match="batch_size"):
    q.set_state(p.get_state())
  q.set_state(p.get_state(), strict=False)
  assert q.get_state()["grain"] == p.get_state()["grain"]
  with pytest.raises(ValueError, match="not a declax.data.Pipeline state"):
    q.set_state({"next_index": 3})


def test_on_disk_reads_equal_in_memory_reads(data_dir):
  def make(in_memory):
    return dd.make_pipeline(
        "declax_digits", "test", 50, seed=1, data_dir=data_dir, in_memory=in_memory, **ONE
    )

  assert _same(_take(make(True), 8), _take(make(False), 8))


def test_load_split_arrays(data_dir):
  x, y = dd.load_split_arrays("declax_digits", "test", data_dir)
  assert x.shape == (360, 8, 8, 1) and y.shape == (360,)
  x, y, w = dd.load_split_arrays("declax_pysrc", "validation", data_dir)
  assert x.shape[1] == 128 and w.sum() == np.count_nonzero(y)


def test_bad_arguments(data_dir):
  with pytest.raises(ValueError, match="no split 'valid'"):
    dd.make_pipeline("declax_digits", "valid", 8, data_dir=data_dir, **ONE)
  with pytest.raises(ValueError, match="num_epochs"):
    dd.make_pipeline("declax_digits", "train", 8, num_epochs=0, data_dir=data_dir)
  with pytest.raises(ValueError, match="no batch of 2000"):
    dd.make_pipeline("declax_digits", "train", 2000, data_dir=data_dir, **ONE)
  with pytest.raises(TypeError, match=r"'declax_digits'.*\['shufle'\]"):
    dd.make_pipeline("declax_digits", "train", 8, shufle=False, data_dir=data_dir)
  with pytest.raises(ValueError, match="normalize"):
    dd.make_pipeline("declax_digits", "train", 8, normalize="minmax", data_dir=data_dir)


@pytest.mark.slow
def test_fashion_mnist_pipeline(fashion_data_dir):
  p = dd.make_pipeline("declax_fashion_mnist", "train", 128, data_dir=fashion_data_dir, **ONE)
  x, y = next(p)
  assert x.shape == (128, 28, 28, 1) and x.dtype == np.float32 and p.batches_per_epoch == 468


# ---------------------------------------------------------------- logic on mock data


def test_two_processes_get_disjoint_equal_shards():
  with _indexed_source(103):
    shards = [
        _ids(
            dd.make_pipeline(
                "declax_digits",
                "train",
                10,
                num_epochs=1,
                drop_remainder=False,
                shard_index=i,
                shard_count=2,
            )
        )  # fmt: skip
        for i in range(2)
    ]
  assert len(shards[0]) == len(shards[1]) == 51
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == list(range(102))


def test_epochs_stop_and_cover_every_example():
  with _indexed_source(25):
    p = dd.make_pipeline(
        "declax_digits", "train", 10, num_epochs=3, drop_remainder=False, **ONE
    )
    batches = list(p)
  assert [len(b[1]) for b in batches] == [10, 10, 5] * 3
  for e in range(3):
    assert sorted(_ids(batches[3 * e : 3 * e + 3])) == list(range(25))
  assert _ids(batches[:3]) != _ids(batches[3:6])  # reshuffled each epoch
  with _indexed_source(25):
    dropped = list(dd.make_pipeline("declax_digits", "train", 10, num_epochs=2, **ONE))
  assert [len(b[1]) for b in dropped] == [10, 10] * 2


def test_default_shard_is_the_jax_process():
  with _indexed_source(20):
    p = dd.make_pipeline("declax_digits", "train", 5)
  assert (p.config["shard_index"], p.config["shard_count"]) == (0, 1)
