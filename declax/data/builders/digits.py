"""`declax_digits`: scikit-learn's bundled 8x8 handwritten digits (no download).

The 57 KB CSV ships inside the scikit-learn wheel; it is read here with numpy, without importing
scikit-learn (which would pull in scipy), and scikit-learn itself is the optional extra
`declax[digits]` so the quick start does not install it.
"""

from __future__ import annotations

import gzip
import importlib.util
import pathlib

import numpy as np
import tensorflow_datasets as tfds

N_TRAIN = 1437  # of 1797; the other 360 are the test split


def split_indices() -> dict[str, np.ndarray]:
  """The fixed split: a `default_rng(0)` permutation of the 1797 images, 1437 train / 360 test."""
  perm = np.random.default_rng(0).permutation(1797)
  return {"train": perm[:N_TRAIN], "test": perm[N_TRAIN:]}


def load_csv() -> tuple[np.ndarray, np.ndarray]:
  """The 1797 images as uint8 `(n, 8, 8, 1)` and their labels, from scikit-learn's bundled CSV."""
  spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
  path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
  if path is None or not path.exists():
    from declax.data.offline import unavailable_error  # offline imports the registry: keep lazy

    raise unavailable_error(
        "declax_digits", "its CSV ships with scikit-learn, which is not installed; install it "
        "with `pip install 'declax[digits]'` (or `pip install scikit-learn`)")
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.int64)
  return table[:, :64].reshape(-1, 8, 8, 1).astype(np.uint8), table[:, 64]


class DeclaxDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's `load_digits`: 1797 grey 8x8 images with values 0..16, 10 classes.

  >>> DeclaxDigits(data_dir='/tmp/tfds', file_format='array_record').download_and_prepare()
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: rng(0) permutation, 1437 train / 360 test."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="scikit-learn's bundled 8x8 digits (UCI optdigits test set), pixels 0..16.",
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        ),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
    )

  def _split_generators(self, dl_manager):
    images, labels = load_csv()
    return {
        split: self._generate_examples(images, labels, idx)
        for split, idx in split_indices().items()
    }

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray, idx: np.ndarray):
    for i in idx:
      yield int(i), {"image": images[i], "label": int(labels[i])}
