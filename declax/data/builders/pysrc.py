"""`declax_pysrc`: a byte-level language-modelling corpus made of Python's own stdlib sources."""

from __future__ import annotations

import dataclasses
import os
import sysconfig

import numpy as np
import tensorflow_datasets as tfds

PAD = 0  # NUL never occurs in Python source, so 0 marks padding unambiguously
SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)
VALIDATION_EVERY = 10  # every 10th file (sorted by relative path) is held out


def stdlib_dir() -> str:
  """The directory of the running Python's standard library (`sysconfig` 'stdlib')."""
  return sysconfig.get_paths()["stdlib"]


def _skipped(dirname: str) -> bool:
  return (
      dirname in SKIP_DIRS
      or dirname.endswith(("_test", "_tests"))
      or dirname.startswith("config-")  # build files of the interpreter
  )


def source_files(root: str) -> list[str]:
  """All `.py` files under `root`, sorted, relative to it; test and site-packages dirs skipped."""
  found = []
  for d, dirs, files in os.walk(root):
    dirs[:] = [x for x in dirs if not _skipped(x)]
    found += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".py")]
  return sorted(found)


def split_files(files: list[str]) -> dict[str, list[str]]:
  """Deterministic file-level split: file i (in sorted order) is validation iff i % 10 == 0."""
  return {
      "train": [f for i, f in enumerate(files) if i % VALIDATION_EVERY],
      "validation": [f for i, f in enumerate(files) if not i % VALIDATION_EVERY],
  }


def windows(data: bytes, seq_len: int) -> np.ndarray:
  """Cuts `data` into windows of `seq_len + 1` bytes starting every `seq_len` bytes.

  Consecutive windows overlap by one byte, so both `w[:-1] -> w[1:]` (shifted) and `w[:-1]`
  alone (models that shift inside) cover every byte once. The last window is padded with 0.

  >>> windows(b'abcde', 2).tolist()
  [[97, 98, 99], [99, 100, 101], [101, 0, 0]]
  """
  n = -(-len(data) // seq_len)  # ceil
  buf = np.zeros(n * seq_len + 1, np.uint8)
  buf[: len(data)] = np.frombuffer(data, np.uint8)
  starts = np.arange(n)[:, None] * seq_len
  return buf[starts + np.arange(seq_len + 1)]


@dataclasses.dataclass(eq=False)
class PysrcConfig(tfds.core.BuilderConfig):
  """`seq_len`: model context; each example holds `seq_len + 1` bytes."""

  seq_len: int = 128


def _config(seq_len: int) -> PysrcConfig:
  return PysrcConfig(
      name=f"seq{seq_len}", seq_len=seq_len, description=f"windows of {seq_len} + 1 bytes"
  )


class DeclaxPysrc(tfds.core.GeneratorBasedBuilder):
  """Bytes of the running Python's standard library (.py files, no tests), as LM windows.

  Splits: `train` and `validation` (every 10th file). Feature `bytes`: uint8 `(seq_len + 1,)`,
  0-padded at the end of each file. Predefined configs `seq64`, `seq128` (default), `seq256`,
  `seq512`; `seq_len=N` picks `seqN` (any N >= 1). The corpus depends on the Python version.

  >>> DeclaxPysrc(data_dir='/tmp/tfds', seq_len=64).download_and_prepare()
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: stride-seq_len windows, every 10th file held out."}
  BUILDER_CONFIGS = [_config(n) for n in (128, 64, 256, 512)]

  def __init__(self, *, seq_len: int | None = None, **kwargs):
    if seq_len is not None:
      if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"declax_pysrc: seq_len must be a positive int, got {seq_len!r}")
      if kwargs.get("config") is not None:
        raise ValueError("declax_pysrc: pass either seq_len or config, not both")
      kwargs["config"] = self.builder_configs.get(f"seq{seq_len}") or _config(seq_len)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    seq_len = self.builder_config.seq_len
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"Byte windows of the Python {sysconfig.get_python_version()} stdlib.",
        features=tfds.features.FeaturesDict(
            {"bytes": tfds.features.Tensor(shape=(seq_len + 1,), dtype=np.uint8)}
        ),
        homepage="https://docs.python.org/3/license.html",
    )

  def _split_generators(self, dl_manager):
    root = stdlib_dir()
    return {
        split: self._generate_examples(root, files)
        for split, files in split_files(source_files(root)).items()
    }

  def _generate_examples(self, root: str, files: list[str]):
    seq_len = self.builder_config.seq_len
    for rel in files:
      with open(os.path.join(root, rel), "rb") as f:
        data = f.read()
      for k, window in enumerate(windows(data, seq_len)):
        yield f"{rel}:{k}", {"bytes": window}
