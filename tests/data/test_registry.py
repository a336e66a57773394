"""The dataset registry: names, specs, user datasets, and TFDS names falling through."""

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

import declax.data as dd
from declax.data import registry


class DeclaxTestCounting(tfds.core.GeneratorBasedBuilder):
  """A user dataset: `x` = [i, i], `y` = i % 3, 50 train / 10 test."""

  VERSION = tfds.core.Version("0.1.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
            {"x": tfds.features.Tensor(shape=(2,), dtype=np.float32), "y": np.int64}
        ),
        supervised_keys=("x", "y"),
    )

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(0, 50), "test": self._generate_examples(50, 60)}

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      yield i, {"x": np.full(2, i, np.float32), "y": i % 3}


SPEC = dd.DatasetSpec(
    "declax_test_counting", DeclaxTestCounting, kind="supervised", input_key="x", target_key="y"
)


@pytest.fixture
def clean_registry():
  saved = dict(registry._REGISTRY)
  yield
  registry._REGISTRY.clear()
  registry._REGISTRY.update(saved)


def test_builtin_specs():
  assert {"declax_digits", "declax_fashion_mnist", "declax_pysrc",
          "declax_gettext_translations"} <= set(dd.registered_names())
  assert dd.local_dataset_names() == dd.registered_names()
  digits = dd.get_dataset_spec("declax_digits")
  assert (digits.kind, digits.n_classes, digits.max_value) == ("image", 10, 16.0)
  lm = dd.get_dataset_spec("declax_pysrc/seq64")
  assert (lm.kind, lm.vocab_size, lm.splits) == ("lm", 256, ("train", "validation"))


def test_unknown_name_lists_registered_names_not_all_of_tfds():
  with pytest.raises(ValueError) as err:
    dd.get_dataset_spec("no_such_dataset")
  msg = str(err.value)
  assert "no_such_dataset" in msg and "declax_digits" in msg and "declax_pysrc" in msg
  assert "cifar10" not in msg and len(msg) < 600  # not TFDS's 1000-name dump


def test_tfds_name_falls_through_and_is_completed_from_info(tmp_path):
  assert dd.get_dataset_spec("mnist") == dd.DatasetSpec("mnist")
  spec, builder = dd.get_builder("mnist", str(tmp_path))
  assert not builder.is_prepared()
  assert (spec.kind, spec.input_key, spec.target_key, spec.n_classes) == (
      "image",
      "image",
      "label",
      10,
  )


def test_register_user_dataset_and_make_a_pipeline(tmp_path, clean_registry):
  dd.register_dataset(SPEC)
  assert "declax_test_counting" in dd.registered_names()
  with pytest.raises(ValueError, match="already registered"):
    dd.register_dataset(SPEC)
  dd.register_dataset(dataclasses.replace(SPEC, description="v2"), overwrite=True)
  assert dd.get_dataset_spec("declax_test_counting").description == "v2"

  p = dd.make_pipeline(
      "declax_test_counting", "train", 10, data_dir=str(tmp_path), num_epochs=1,
      shard_index=0, shard_count=1,
  )  # fmt: skip
  batches = list(p)
  x = np.concatenate([b[0] for b in batches])
  y = np.concatenate([b[1] for b in batches])
  assert len(batches) == 5 and sorted(x[:, 0].tolist()) == list(range(50))
  np.testing.assert_array_equal(y, x[:, 0].astype(np.int64) % 3)
  assert y.dtype == np.int32


def test_spec_validation():
  with pytest.raises(ValueError, match="kind must be one of"):
    dd.DatasetSpec("bad", kind="video")
  with pytest.raises(ValueError, match="needs a target_key"):
    dd.DatasetSpec("bad", kind="image", target_key=None)
