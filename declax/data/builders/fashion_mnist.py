"""`declax_fashion_mnist`: Zalando's Fashion-MNIST from local IDX files (Debian package)."""

from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

from declax.data.offline import DatasetUnavailableError

DEFAULT_SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
SOURCE_DIR_ENV_VAR = "DECLAX_FASHION_MNIST_DIR"
CLASS_NAMES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)  # fmt: skip
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (`.gz` or raw) of unsigned bytes into an array of its declared shape."""
  with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
    raw = f.read()
  if raw[:2] != b"\0\0" or raw[2] != 0x08:
    raise ValueError(f"{path} is not an IDX file of unsigned bytes")
  ndim = raw[3]
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def resolve_source_dir(path: str | os.PathLike | None = None) -> str:
  """The IDX directory: `path`, else $DECLAX_FASHION_MNIST_DIR, else the Debian location."""
  return os.fspath(path or os.environ.get(SOURCE_DIR_ENV_VAR) or DEFAULT_SOURCE_DIR)


def check_source_dir(path: str) -> None:
  """Raises `DatasetUnavailableError` naming the first missing IDX file and the fix."""
  for names in FILES.values():
    for name in names:
      file = os.path.join(path, name)
      if not os.path.isfile(file):
        raise DatasetUnavailableError(
            f"declax_fashion_mnist: looked for {file} and it does not exist. Install the "
            "files with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point "
            f"${SOURCE_DIR_ENV_VAR} (or source_dir=...) at a directory holding {names}."
        )


class DeclaxFashionMnist(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST, 60k train / 10k test grey 28x28 images, 10 classes, read from IDX files.

  `source_dir` (or $DECLAX_FASHION_MNIST_DIR) overrides `/usr/share/datasets/fashion-mnist`;
  it is only read when preparing.

  >>> DeclaxFashionMnist(data_dir='/tmp/tfds', file_format='array_record').download_and_prepare()
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release from the IDX files of dataset-fashion-mnist."}

  def __init__(self, *, source_dir: str | os.PathLike | None = None, **kwargs):
    self.source_dir = resolve_source_dir(source_dir)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Fashion-MNIST (Zalando Research, MIT licence), from local IDX files.",
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            }
        ),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    check_source_dir(self.source_dir)
    return {split: self._generate_examples(*files) for split, files in FILES.items()}

  def _generate_examples(self, images_file: str, labels_file: str):
    images = read_idx(os.path.join(self.source_dir, images_file))
    labels = read_idx(os.path.join(self.source_dir, labels_file))
    if len(images) != len(labels):
      raise ValueError(f"{images_file}: {len(images)} images but {len(labels)} labels")
    for i in range(len(labels)):
      yield i, {"image": images[i][..., None], "label": int(labels[i])}
