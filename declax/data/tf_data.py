"""The same batches through `tfds` + tf.data (optional: needs TensorFlow, `pip install
'declax[tf]'`). TensorFlow is imported only when `make_tf_pipeline` is called.

tf.data reads tfrecord files, grain reads array_record, and one prepared copy cannot serve both,
so this path prepares its own copy under `<data_dir>/tfrecord`. Unlike `make_pipeline`, the
iterator is not checkpointable and its shuffle is a buffer (not a full permutation).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from declax.data.data_dir import resolve_data_dir
from declax.data.preprocess import Batch, check_options, make_batch_fn
from declax.data.sampling import resolve_shard
from declax.data.sources import prepare

TF_SUBDIR = "tfrecord"


def tf_data_dir(data_dir: str | None = None) -> str:
  """Where the tfrecord copies live: `<resolve_data_dir(data_dir)>/tfrecord`."""
  return os.path.join(resolve_data_dir(data_dir), TF_SUBDIR)


def make_tf_pipeline(
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
    shuffle_buffer: int = 10_000,
    cache: bool = True,
    **builder_kwargs: Any,
) -> Iterator[Batch]:
  """`make_pipeline`'s batches (same tuples, dtypes and preprocessing) from `tfds` + tf.data.

  Shards are equally long; `cache` keeps decoded examples in memory after the first epoch.

  >>> batches = make_tf_pipeline('declax_digits', 'train', 128, num_epochs=1)
  >>> x, y = next(batches)
  """
  try:
    import tensorflow as tf
  except ModuleNotFoundError as e:
    raise ModuleNotFoundError(
        "make_tf_pipeline needs TensorFlow: pip install 'declax[tf]' "
        "(declax.data.make_pipeline does not)"
    ) from e
  import tensorflow_datasets as tfds

  check_options(normalize=normalize, lm_format=lm_format)
  spec, builder = prepare(name, tf_data_dir(data_dir), file_format="tfrecord", **builder_kwargs)
  to_batch = make_batch_fn(
      spec, normalize=normalize, lm_format=lm_format, add_weights=add_weights
  )
  shard_index, shard_count = resolve_shard(shard_index, shard_count)
  per_shard = builder.info.splits[split].num_examples // shard_count
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.take(per_shard * shard_count).shard(shard_count, shard_index)
  if cache:
    ds = ds.cache()
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder).repeat(num_epochs)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return map(to_batch, tfds.as_numpy(ds))
