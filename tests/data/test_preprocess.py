"""Examples -> batch tuples: image scaling, LM formats and weights."""

import numpy as np
import pytest

import declax.data as dd

DIGITS = dd.get_dataset_spec("declax_digits")
LM = dd.get_dataset_spec("declax_pysrc")


def _images():
  return {"image": np.array([0, 8, 16], np.uint8).reshape(3, 1, 1, 1), "label": np.arange(3)}


def test_image_unit_standardize_none():
  x, y = dd.make_batch_fn(DIGITS)(_images())
  np.testing.assert_allclose(x.ravel(), [0.0, 0.5, 1.0])
  assert x.dtype == np.float32 and y.dtype == np.int32
  xs, _ = dd.make_batch_fn(DIGITS, normalize="standardize")(_images())
  np.testing.assert_allclose(xs.ravel(), (np.array([0, 0.5, 1]) - DIGITS.mean) / DIGITS.std)
  raw, _ = dd.make_batch_fn(DIGITS, normalize="none")(_images())
  assert raw.dtype == np.uint8
  x, y, w = dd.make_batch_fn(DIGITS, add_weights=True)(_images())
  np.testing.assert_array_equal(w, np.ones(3, np.float32))


def test_lm_formats_and_padding_weights():
  window = np.array([[5, 6, 7, 0, 0]], np.uint8)
  x, y, w = dd.make_batch_fn(LM)({"bytes": window})
  assert x is y and x.tolist() == [[5, 6, 7, 0]] and x.dtype == np.int32
  assert w.tolist() == [[1, 1, 1, 0]]
  x, y, w = dd.make_batch_fn(LM, lm_format="shifted")({"bytes": window})
  assert (x.tolist(), y.tolist(), w.tolist()) == ([[5, 6, 7, 0]], [[6, 7, 0, 0]], [[1, 1, 0, 0]])
  assert len(dd.make_batch_fn(LM, add_weights=False)({"bytes": window})) == 2


def test_bad_options():
  with pytest.raises(ValueError, match="normalize must be one of"):
    dd.make_batch_fn(DIGITS, normalize="max")
  with pytest.raises(ValueError, match="lm_format must be one of"):
    dd.make_batch_fn(LM, lm_format="t5")
  no_stats = dd.DatasetSpec("x", kind="image")
  with pytest.raises(ValueError, match="mean/std"):
    dd.make_batch_fn(no_stats, normalize="standardize")
