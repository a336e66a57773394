"""Bad Trax checkpoints and model names (catalogue entries X*): refused with a message naming the
file, the class or the mismatched parameter paths; a refused pickle never runs code."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from declax.errors import DeclaxError
from declax.trax_compat import (
    TraxCheckpointError,
    TraxModelError,
    init_from_file,
    model_from_trax,
    read_checkpoint,
)
from declax.trax_compat.files import read_arrays
from tests.reliability.catalogue import CATALOGUE

MLP_RUN = Path(__file__).parents[2] / ".." / "shared" / "trax_checkpoints" / "mlp"
needs_fixture = pytest.mark.skipif(not MLP_RUN.is_dir(), reason=f"no Trax fixture at {MLP_RUN}")


def expect(entry: str, error: BaseException) -> None:
  assert isinstance(error, DeclaxError)
  assert CATALOGUE[entry] in str(error), f"{entry}: {CATALOGUE[entry]!r} not in\n{error}"


def _pickle(path: Path, content) -> Path:
  with gzip.open(path, "wb") as f:
    pickle.dump(content, f)
  return path


class _RunsCode:
  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (os.mkdir, (self.marker,))


def test_bad_files(tmp_path):
  with pytest.raises(TraxCheckpointError) as info:
    read_checkpoint(tmp_path / "model.pkl.gz")
  expect("X1", info.value)
  (tmp_path / "notes.txt").write_text("hello")
  with pytest.raises(TraxCheckpointError) as info:
    read_checkpoint(tmp_path / "notes.txt")
  expect("X2", info.value)
  with pytest.raises(TraxCheckpointError) as info:
    read_checkpoint(_pickle(tmp_path / "other.pkl.gz", {"weights": []}))
  expect("X3", info.value)


def test_refused_pickles(tmp_path):
  marker = tmp_path / "was_run"
  with pytest.raises(TraxCheckpointError) as info:
    read_checkpoint(_pickle(tmp_path / "a.pkl.gz", {"flat_weights": [_RunsCode(str(marker))]}))
  expect("X4", info.value)
  assert not marker.exists()
  objects = {"flat_weights": [np.array([1, "a"], dtype=object)]}
  with pytest.raises(TraxCheckpointError) as info:
    read_checkpoint(_pickle(tmp_path / "b.pkl.gz", objects))
  expect("X5", info.value)


@needs_fixture
def test_model_does_not_fit_the_checkpoint(tmp_path):
  x = np.zeros((4, 12), np.float32)
  with pytest.raises(TraxCheckpointError) as info:
    init_from_file(model_from_trax("MLP", layer_widths=(32, 16, 4)), MLP_RUN / "model.pkl.gz", x)
  expect("X6", info.value)
  with pytest.raises(TraxCheckpointError) as info:
    init_from_file(model_from_trax("MLP", layer_widths=(32, 16)), MLP_RUN / "model.pkl.gz", x)
  expect("X7", info.value)
  weights_only = _pickle(tmp_path / "w.pkl.gz",
                         {"flat_weights": read_arrays(str(MLP_RUN / "model.weights.npy.gz"))})
  with pytest.raises(TraxCheckpointError) as info:
    init_from_file(model_from_trax("MLP", layer_widths=(32, 16, 5)), weights_only, x,
                   weights_only=False)
  expect("X8", info.value)


def test_bad_model_names_and_arguments():
  with pytest.raises(TraxModelError) as info:
    model_from_trax("TransformerLm", vocab_size=10)
  expect("X9", info.value)
  with pytest.raises(TraxModelError) as info:
    model_from_trax("TransformerLM", vocab_size=10, n_layer=2)
  expect("X10", info.value)
  with pytest.raises(TraxModelError) as info:
    model_from_trax("ReformerLM", vocab_size=10, attention_type="SelfAttention(chunk_lenn=16)")
  expect("X11", info.value)
  with pytest.raises(TraxModelError) as info:
    model_from_trax("ReformerLM", vocab_size=10, loss_sparsity=4)
  expect("X12", info.value)
