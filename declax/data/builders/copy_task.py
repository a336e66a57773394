"""`declax_copy`: Trax's sequence-copy task, `0 w 0 w` with loss on the copied half only.

Each example is a random word `w` of `length` tokens drawn uniformly from `1 .. vocab_size - 1`,
laid out as `[0, w, 0, w]` (`2 * length + 2` tokens). `inputs == targets` (a language model
shifts right inside, Trax's format) and `weights` are 1 on the second `w` only: the first half is
random and cannot be predicted, the second half is a copy. Importing this module registers the
dataset as kind `'supervised'` with `weights_key='weights'`, so a batch is
`(inputs, targets, weights)`. Builder kwargs: `vocab_size` (default 32) and `length` (default 31).

```python
import declax.data.builders.copy_task  # registers declax_copy
from declax.data import make_pipeline
inputs, targets, weights = next(make_pipeline('declax_copy', 'train', 8, length=15))
```
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from declax.data.registry import DatasetSpec, register_dataset, registered_names

NAME = "declax_copy"
SPLITS = {"train": (20000, 1), "test": (1000, 2)}  # split -> (examples, seed)


def copy_examples(n: int, vocab_size: int, length: int, seed: int) -> dict[str, np.ndarray]:
  """`n` examples `[0, w, 0, w]` as int32 `(n, 2 * length + 2)` with their loss weights."""
  rng = np.random.default_rng(seed)
  w = rng.integers(1, vocab_size, (n, length)).astype(np.int32)
  zero = np.zeros((n, 1), np.int32)
  seq = np.concatenate([zero, w, zero, w], axis=1)
  weights = np.zeros(seq.shape, np.float32)
  weights[:, length + 2:] = 1.0
  return {"inputs": seq, "targets": seq, "weights": weights}


@dataclasses.dataclass
class CopyConfig(tfds.core.BuilderConfig):
  """`vocab_size` (token 0 is the separator) and `length` of the word to copy."""

  vocab_size: int = 32
  length: int = 31


class DeclaxCopy(tfds.core.GeneratorBasedBuilder):
  """Trax's copy task (see the module docstring): 20,000 train / 1,000 test examples.

  >>> DeclaxCopy(data_dir='/tmp/tfds', vocab_size=16, length=7).download_and_prepare()
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: [0, w, 0, w], weights on the copy."}

  def __init__(self, *, vocab_size: int | None = None, length: int | None = None, **kwargs):
    if vocab_size is not None or length is not None:
      vocab_size, length = vocab_size or 32, length or 31
      if vocab_size < 2 or length < 1:
        raise ValueError(f"declax_copy: vocab_size must be >= 2 and length >= 1, got "
                         f"{vocab_size}, {length}")
      name = f"v{vocab_size}_n{length}"
      known = {c.name for c in self.BUILDER_CONFIGS}
      kwargs["config"] = name if name in known else CopyConfig(
          name=name, vocab_size=vocab_size, length=length)
    super().__init__(**kwargs)

  BUILDER_CONFIGS = [CopyConfig(name="v32_n31", vocab_size=32, length=31)]

  def _info(self) -> tfds.core.DatasetInfo:
    n = 2 * self.builder_config.length + 2
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(n,), dtype=np.int32),
            "targets": tfds.features.Tensor(shape=(n,), dtype=np.int32),
            "weights": tfds.features.Tensor(shape=(n,), dtype=np.float32),
        }),
        supervised_keys=("inputs", "targets"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # generated, nothing to download
    return {split: self._generate_examples(*SPLITS[split]) for split in SPLITS}

  def _generate_examples(self, n: int, seed: int):
    cfg = self.builder_config
    data = copy_examples(n, cfg.vocab_size, cfg.length, seed)
    for i in range(n):
      yield i, {k: v[i] for k, v in data.items()}


if NAME not in registered_names():
  register_dataset(DatasetSpec(
      NAME, DeclaxCopy, kind="supervised", input_key="inputs", target_key="targets",
      weights_key="weights", vocab_size=32, splits=("train", "test"),
      description="Trax's copy task [0, w, 0, w], loss weights on the copy",
  ))
