"""`declax_synthetic_tabular`: a SYNTHETIC regression task on mixed categorical/numeric columns.

No real tabular dataset with categorical columns is available offline, so this builder generates
one whose structure is known exactly (for `declax.models.MultiEmbeddingModel` demos and tests):

- categorical columns `cat_0`, `cat_1`, `cat_2` with `CARDINALITIES = (12, 7, 5)` values, uniform;
- `numeric`: 4 standard-normal columns `x0..x3`;
- `target = u[cat_0] + v[cat_1] + w[cat_2] * x0 + tanh(2 * x1) - 0.5 * x2 + noise`,
    where `u, v, w` are fixed tables drawn once from `default_rng(TABLE_SEED)`, `x3` is
    irrelevant, and `noise ~ N(0, NOISE_STD**2)`.

The best possible mean squared error is `NOISE_STD**2 = 0.01`; predicting the mean gives the
target's variance (about 4.1), so R^2 near 1 means the model found the structure, including the
interaction of `cat_2` with `x0`. Splits: 8000 train / 2000 test, generated deterministically.

Importing this module registers the dataset (`declax.data.register_dataset`) as kind
`'supervised'` with `input_key=('cat_0', 'cat_1', 'cat_2', 'numeric')`, so a batch is
`(cat_0, cat_1, cat_2, numeric, target)` — the inputs of
`MultiEmbeddingModel(CARDINALITIES, d_feature, n_numeric=4)` and a `(batch, 1)` target shaped
like its output (train with `tl.L2Loss()`). Until `declax.data`'s batching takes several input
keys, `batches()` below makes such batches from the prepared dataset.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from declax.data.registry import DatasetSpec, get_dataset_spec, register_dataset, registered_names

NAME = "declax_synthetic_tabular"
CARDINALITIES = (12, 7, 5)
N_NUMERIC = 4
NOISE_STD = 0.1
TABLE_SEED = 1234
SPLITS = {"train": (8000, 1), "test": (2000, 2)}  # split -> (examples, seed)
INPUT_KEYS = tuple(f"cat_{i}" for i in range(len(CARDINALITIES))) + ("numeric",)


def effect_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The fixed per-category effects `u` (of cat_0), `v` (of cat_1) and slopes `w` (of cat_2)."""
  rng = np.random.default_rng(TABLE_SEED)
  u = rng.normal(0.0, 1.0, CARDINALITIES[0])
  v = rng.normal(0.0, 0.7, CARDINALITIES[1])
  w = rng.normal(0.0, 1.0, CARDINALITIES[2])
  return u, v, w


def generate(n: int, seed: int) -> dict[str, np.ndarray]:
  """`n` examples as columns: `cat_i` int32 (n,), `numeric` float32 (n, 4), `target` (n, 1)."""
  rng = np.random.default_rng(seed)
  cats = [rng.integers(0, c, n).astype(np.int32) for c in CARDINALITIES]
  x = rng.normal(size=(n, N_NUMERIC)).astype(np.float32)
  u, v, w = effect_tables()
  target = (
      u[cats[0]]
      + v[cats[1]]
      + w[cats[2]] * x[:, 0]
      + np.tanh(2.0 * x[:, 1])
      - 0.5 * x[:, 2]
      + rng.normal(0.0, NOISE_STD, n)
  )
  columns = {f"cat_{i}": c for i, c in enumerate(cats)}
  return {**columns, "numeric": x, "target": target.astype(np.float32)[:, None]}


class DeclaxSyntheticTabular(tfds.core.GeneratorBasedBuilder):
  """The synthetic tabular regression task described in this module's docstring.

  >>> builder = DeclaxSyntheticTabular(data_dir='/tmp/tfds', file_format='array_record')
  >>> builder.download_and_prepare()
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 3 categorical + 4 numeric columns, 8000/2000."}

  def _info(self) -> tfds.core.DatasetInfo:
    categorical = {
        f"cat_{i}": tfds.features.Tensor(shape=(), dtype=np.int32)
        for i in range(len(CARDINALITIES))
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "SYNTHETIC: target = u[cat_0] + v[cat_1] + w[cat_2] * x0 + tanh(2 x1) - 0.5 x2 "
            "+ N(0, 0.1^2); see declax.data.builders.synthetic_tabular."
        ),
        features=tfds.features.FeaturesDict(
            {
                **categorical,
                "numeric": tfds.features.Tensor(shape=(N_NUMERIC,), dtype=np.float32),
                "target": tfds.features.Tensor(shape=(1,), dtype=np.float32),
            }
        ),
    )

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(n, seed) for split, (n, seed) in SPLITS.items()}

  def _generate_examples(self, n: int, seed: int):
    columns = generate(n, seed)
    for i in range(n):
      yield i, {k: v[i] for k, v in columns.items()}


def spec() -> DatasetSpec:
  """The registered `DatasetSpec` (registering it on first use)."""
  if NAME not in registered_names():
    register_dataset(
        DatasetSpec(
            NAME, DeclaxSyntheticTabular, kind="supervised",
            input_key=INPUT_KEYS,  # type: ignore[arg-type]  (several inputs: see docstring)
            target_key="target", splits=("train", "test"),
            description="SYNTHETIC mixed categorical/numeric regression, 8000/2000",
        )
    )  # fmt: skip
  return get_dataset_spec(NAME)


spec()
