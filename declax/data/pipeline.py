"""`make_pipeline`: a named dataset split as a checkpointable iterator of training batches."""

from __future__ import annotations

import copy
import sys
from typing import Any

import grain

from declax.data.preprocess import Batch, check_options, make_batch_fn
from declax.data.registry import DatasetSpec
from declax.data.sampling import EpochBatches, resolve_shard, shard_indices
from declax.data.sources import BatchReader, load_split, prepare

STATE_VERSION = 1


def default_read_options(in_memory: bool) -> grain.ReadOptions:
  """Background threads and prefetch depth: one thread suffices for in-memory numpy indexing;
  on-disk bulk reads overlap better with more."""
  if in_memory:
    return grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)
  return grain.ReadOptions(num_threads=4, prefetch_buffer_size=16)


class Pipeline:
  """An iterator of batches `(inputs, targets[, weights])` whose position can be saved.

  `get_state()` is a JSON-serialisable dict (save it with `ocp.args.JsonSave`); `set_state()`
  on a pipeline made with the same arguments resumes at exactly the next batch.

  >>> p = make_pipeline('declax_digits', 'train', 32)
  >>> x, y = next(p); state = p.get_state(); batch = next(p)
  >>> q = make_pipeline('declax_digits', 'train', 32); q.set_state(state)   # next(q) == batch
  """

  def __init__(
      self, dataset: grain.IterDataset, *, spec: DatasetSpec, batches_per_epoch: int,
      num_examples: int, config: dict[str, Any],
  ):  # fmt: skip
    self.spec = spec
    self.batches_per_epoch = batches_per_epoch
    self.num_examples = num_examples  # in this shard
    self.config = config
    self._iterator = iter(dataset)

  def __iter__(self) -> Pipeline:
    return self

  def __next__(self) -> Batch:
    return next(self._iterator)

  def get_state(self) -> dict[str, Any]:
    """The position (grain's iterator state) and the arguments it is valid for."""
    return {
        "version": STATE_VERSION,
        "grain": self._iterator.get_state(),
        "config": copy.deepcopy(self.config),
    }

  def set_state(self, state: dict[str, Any], *, strict: bool = True) -> None:
    """Moves to the position saved in `state`. With `strict`, a state saved by a pipeline with
    other arguments (dataset, batch size, seed, sharding, ...) is a `ValueError`."""
    if not isinstance(state, dict) or "grain" not in state:
      raise ValueError(f"not a declax.data.Pipeline state: {state!r}")
    if strict:
      saved = state.get("config", {})
      diff = {k: (saved.get(k), v) for k, v in self.config.items() if saved.get(k) != v}
      if diff:
        raise ValueError(
            "pipeline state was saved with other arguments; (saved, now): "
            f"{diff}. Pass strict=False to apply it anyway."
        )
    self._iterator.set_state(state["grain"])

  def close(self) -> None:
    """Stops the background prefetch threads."""
    self._iterator.close()


def _jsonable(value: Any) -> Any:
  return value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)


def _check_split(name: str, builder: Any, split: str) -> None:
  splits = builder.info.splits
  if not splits:  # unknown, e.g. under tfds.testing.mock_data: the data source decides
    return
  try:
    splits[split]
  except (KeyError, ValueError) as e:
    raise ValueError(
        f"dataset {name!r} has no split {split!r} ({e}); its splits: {list(splits)}"
    ) from None


def make_pipeline(
    name: str,
    split: str,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    data_dir: str | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    normalize: str = "unit",
    lm_format: str = "trax",
    add_weights: bool | None = None,
    in_memory: bool | None = None,
    read_options: grain.ReadOptions | None = None,
    **builder_kwargs: Any,
) -> Pipeline:
  """Batches of `split` of dataset `name`, preparing the dataset first if needed.

  **Arguments**
  - `name`: a registered name (`'declax_digits'`, `'declax_pysrc/seq64'`, ...) or a TFDS name;
    `split`: a TFDS split, slices included (`'train[:90%]'`); `batch_size`: per process.
  - `seed`, `shuffle`: each epoch is a fresh permutation seeded by `(seed, epoch)`.
  - `num_epochs`: None repeats forever; batches never span epochs.
  - `drop_remainder`: drop each epoch's last partial batch (keeps shapes static under jit).
  - `data_dir`: see `resolve_data_dir` ($DECLAX_DATA_DIR, $TFDS_DATA_DIR, ~/tensorflow_datasets).
  - `shard_index`, `shard_count`: this process's disjoint shard (default
    `jax.process_index()`, `jax.process_count()`).
  - `normalize`, `lm_format`, `add_weights`: see `declax.data.preprocess`.
  - `in_memory`: read the split into memory once (default: when it is under ~1 GiB).
  - `read_options`: grain's thread count and prefetch depth (`default_read_options`).
  - `**builder_kwargs`: for the builder, e.g. `seq_len=64` for `declax_pysrc`.

  **Returns** a `Pipeline`: `next(p)` is a tuple of numpy arrays, `(inputs, targets)` for images
  (float32 NHWC in [0, 1], int32 labels), `(inputs, targets, weights)` for language models.

  >>> p = make_pipeline('declax_pysrc', 'train', 8, seq_len=64)
  >>> [a.shape for a in next(p)]
  [(8, 64), (8, 64), (8, 64)]
  """
  if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
    raise ValueError(f"num_epochs must be None (forever) or an int >= 1, got {num_epochs!r}")
  check_options(normalize=normalize, lm_format=lm_format)  # fail before a long prepare
  spec, builder = prepare(name, data_dir, **builder_kwargs)
  to_batch = make_batch_fn(
      spec, normalize=normalize, lm_format=lm_format, add_weights=add_weights
  )
  _check_split(name, builder, split)
  shard_index, shard_count = resolve_shard(shard_index, shard_count)
  reader = BatchReader(builder, split, in_memory)
  batches = EpochBatches(
      shard_indices(reader.num_examples, shard_index, shard_count), batch_size,
      seed=seed, shuffle=shuffle, drop_remainder=drop_remainder,
  )  # fmt: skip
  n_batches = sys.maxsize if num_epochs is None else num_epochs * batches.batches_per_epoch
  dataset = (
      grain.MapDataset.range(n_batches)
      .map(lambda step: to_batch(reader(batches(step))))
      .to_iter_dataset(read_options or default_read_options(reader.in_memory))
  )
  config = {
      "name": name, "split": split, "batch_size": batch_size, "seed": seed, "shuffle": shuffle,
      "num_epochs": num_epochs, "drop_remainder": drop_remainder, "shard_index": shard_index,
      "shard_count": shard_count, "num_examples": reader.num_examples,
      "builder_kwargs": {k: _jsonable(v) for k, v in sorted(builder_kwargs.items())},
  }  # fmt: skip
  return Pipeline(
      dataset, spec=spec, batches_per_epoch=batches.batches_per_epoch,
      num_examples=len(batches.indices), config=config,
  )  # fmt: skip


def load_split_arrays(
    name: str,
    split: str,
    data_dir: str | None = None,
    *,
    normalize: str = "unit",
    lm_format: str = "trax",
    add_weights: bool | None = None,
    **builder_kwargs: Any,
) -> Batch:
  """A whole split as one batch tuple, in stored order (for evaluation on the full split).

  >>> x, y = load_split_arrays('declax_digits', 'test')
  >>> x.shape, y.shape
  ((360, 8, 8, 1), (360,))
  """
  spec, builder = prepare(name, data_dir, **builder_kwargs)
  _check_split(name, builder, split)
  to_batch = make_batch_fn(
      spec, normalize=normalize, lm_format=lm_format, add_weights=add_weights
  )
  return to_batch(load_split(builder, split))
