"""The optional tf.data path, and that declax.data itself never imports TensorFlow."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import declax.data as dd
from declax.data import tf_data


def test_import_declax_data_does_not_import_tensorflow():
  code = "import sys, declax.data; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
  subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TF is installed")
def test_without_tensorflow_the_error_says_how_to_get_it(data_dir):
  with pytest.raises(ModuleNotFoundError, match=r"declax\[tf\]"):
    tf_data.make_tf_pipeline("declax_digits", "train", 8, data_dir=data_dir)


def test_tf_pipeline_matches_grain_pipeline(data_dir):
  pytest.importorskip("tensorflow", reason="the tf.data path needs TensorFlow ('declax[tf]')")
  batches = list(tf_data.make_tf_pipeline(
      "declax_digits", "train", 100, num_epochs=1, data_dir=data_dir, shard_index=0,
      shard_count=1,
  ))  # fmt: skip
  assert len(batches) == 14 and all(len(b) == 2 for b in batches)
  x = np.concatenate([b[0] for b in batches])
  y = np.concatenate([b[1] for b in batches])
  assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape[1:] == (8, 8, 1)
  x_ref, y_ref = dd.load_split_arrays("declax_digits", "train", data_dir)
  assert len(set(map(bytes, x))) == 1400 and set(map(bytes, x)) <= set(map(bytes, x_ref))
  tf_dir = tf_data.tf_data_dir(data_dir)
  assert tf_dir.startswith(data_dir)
  with pytest.raises(dd.DatasetUnavailableError, match="prepared as tfrecord"):
    dd.make_pipeline("declax_digits", "train", 8, data_dir=tf_dir)
  lm = next(tf_data.make_tf_pipeline("declax_pysrc", "validation", 4, data_dir=data_dir))
  assert [a.shape for a in lm] == [(4, 128)] * 3
