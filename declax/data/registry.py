"""Datasets by name: what builds each one and how its examples become training batches.

Configs name datasets by string (`config.data.name = 'declax_digits'`). A name is looked up here
first; any other name is handed to TFDS (with the offline check of `declax.data.offline`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from declax.data import builders
from declax.errors import did_you_mean
from declax.registry import Registry, RegistryError

KINDS = ("image", "lm", "supervised")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to build a dataset and turn its examples into `(inputs, targets[, weights])` batches.

  **Arguments**
  - `name`: registry name (also the TFDS name when `builder` is None).
  - `builder`: a `tfds.core.DatasetBuilder` subclass; None = `tfds.builder(name)`.
  - `kind`: `'image'` (uint8 images scaled to float32), `'lm'` (byte/token windows, targets
    derived from inputs, weights mask padding 0) or `'supervised'` (arrays passed through).
  - `input_key`, `target_key`: feature names (`target_key` is unused for `'lm'`); a tuple
    of input keys gives one batch item per key (several model inputs, e.g. tabular columns).
  - `n_classes` / `vocab_size`: for models and metrics.
  - `max_value`: the largest raw pixel value (images are divided by it).
  - `mean`, `std`: statistics of the scaled pixels, for `normalize='standardize'`.
  - `splits`: (train split, eval split).
  - `weights_key`: for `'supervised'`, a feature holding per-target loss weights (default: ones).

  >>> spec = DatasetSpec('my_digits', MyBuilder, kind='image', n_classes=10, max_value=16)
  """

  name: str
  builder: type[tfds.core.DatasetBuilder] | None = None
  kind: str = "supervised"
  input_key: str | tuple[str, ...] = "image"
  target_key: str | None = "label"
  n_classes: int | None = None
  vocab_size: int | None = None
  max_value: float = 255.0
  mean: float | None = None
  std: float | None = None
  splits: tuple[str, str] = ("train", "test")
  description: str = ""
  weights_key: str | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise RegistryError(
          f"DatasetSpec {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}"
      )
    if self.kind != "lm" and self.target_key is None:
      raise RegistryError(f"DatasetSpec {self.name!r}: kind {self.kind!r} needs a target_key")


DATASETS = Registry("dataset")  # the same registry API as declax.registry's models and layers
_REGISTRY = DATASETS.table


def register_dataset(spec: DatasetSpec, *, overwrite: bool = False) -> DatasetSpec:
  """Makes `spec.name` usable as `make_pipeline(name, ...)` / `config.data.name`.

  >>> register_dataset(DatasetSpec('my_digits', MyBuilder, kind='image', n_classes=10))
  """
  return DATASETS.register(spec, name=spec.name, overwrite=overwrite)


def registered_names() -> list[str]:
  """All registered dataset names, sorted."""
  return DATASETS.names()


def local_dataset_names() -> list[str]:
  """Registered datasets that come with their own builder (no download), sorted."""
  return sorted(n for n, s in DATASETS.table.items() if s.builder is not None)


def split_name(name: str) -> tuple[str, str | None]:
  """`'declax_pysrc/seq64'` -> `('declax_pysrc', 'seq64')`; `'mnist'` -> `('mnist', None)`."""
  base, _, config = name.partition("/")
  return base, config or None


def get_dataset_spec(name: str) -> DatasetSpec:
  """The spec for `name` (`'base'` or `'base/config'`): registered, else a TFDS dataset.

  TFDS datasets get `DatasetSpec(name)`; `spec_from_info` fills kind and keys once the
  builder's info is known. Unknown names raise a `RegistryError` (a `ValueError`) listing the
  registered names.

  >>> get_dataset_spec('declax_digits').n_classes
  10
  """
  base, _ = split_name(name)
  if base in DATASETS:
    return DATASETS.get(base)
  try:
    tfds.builder_cls(base)
  except tfds.core.registered.DatasetNotFoundError:
    hint = did_you_mean(repr(base), [repr(n) for n in registered_names()])
    raise RegistryError(
        f"Unknown dataset {name!r}{hint or '.'} Registered declax datasets: "
        f"{registered_names()}; any "
        "TFDS name (tfds.list_builders()) also works, and register_dataset(DatasetSpec(...)) "
        "adds your own."
    ) from None
  return DatasetSpec(base)


def spec_from_info(spec: DatasetSpec, info: tfds.core.DatasetInfo) -> DatasetSpec:
  """Completes a bare TFDS spec from `info`: supervised keys, class count, image kind."""
  if spec.builder is not None or info.supervised_keys is None:
    return spec
  input_key, target_key = info.supervised_keys[:2]
  if not isinstance(input_key, str) or not isinstance(target_key, str):
    return spec
  features = info.features
  x, y = features[input_key], features[target_key]
  is_image = isinstance(x, tfds.features.Image) or (
      isinstance(x, tfds.features.Tensor)
      and len(x.shape) == 3
      and np.dtype(x.np_dtype) == np.uint8
  )
  n_classes = y.num_classes if isinstance(y, tfds.features.ClassLabel) else None
  return dataclasses.replace(
      spec,
      kind="image" if is_image else "supervised",
      input_key=input_key,
      target_key=target_key,
      n_classes=n_classes,
  )


# Pixel statistics below are of the train split scaled to [0, 1] (all pixels pooled).
register_dataset(
    DatasetSpec(
        "declax_digits", builders.DeclaxDigits, kind="image", n_classes=10, max_value=16.0,
        mean=0.3054, std=0.3760, description="scikit-learn 8x8 digits, 1437/360",
    )
)  # fmt: skip
register_dataset(
    DatasetSpec(
        "declax_fashion_mnist", builders.DeclaxFashionMnist, kind="image", n_classes=10,
        mean=0.2860, std=0.3530, description="Fashion-MNIST 28x28, 60000/10000",
    )
)  # fmt: skip
register_dataset(
    DatasetSpec(
        "declax_pysrc", builders.DeclaxPysrc, kind="lm", input_key="bytes", target_key=None,
        vocab_size=256, splits=("train", "validation"),
        description="bytes of the Python stdlib, windows of seq_len + 1",
    )
)  # fmt: skip
register_dataset(
    DatasetSpec(
        "declax_gettext_translations", builders.DeclaxGettextTranslations, kind="supervised",
        input_key="en", target_key="de", splits=("train", "test"),
        description="English -> X gettext messages (text; target_key is the config's language)",
    )
)  # fmt: skip
