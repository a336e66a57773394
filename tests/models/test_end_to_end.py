"""End-to-end training runs of the model zoo from their configs (slow: minutes on 2 CPU cores).

Each run trains from `configs/<name>.py` (the steps and models as configured, nothing shrunk
except where noted) and asserts a metric far better than chance.
"""

import importlib.util
import os

import numpy as np
import pytest

from declax.data.builders import synthetic_tabular
from declax.training.from_config import (
  sample_from_workdir,
  train_and_evaluate,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.slow


def load_module(relative_path: str):
  spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(relative_path))[0], os.path.join(REPO, relative_path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def config_for(name: str, data_dir: str):
  config = load_module(f"configs/{name}.py").get_config()
  config.data.data_dir = data_dir
  return config


def final_eval(loop) -> dict:
  assert loop.eval_history, "the run did not evaluate"
  return loop.eval_history[-1][1]


def test_pysrc_rnn_lm_learns_python_and_samples(data_dir, tmp_path):
  workdir = str(tmp_path / "rnn")
  loop = train_and_evaluate(config_for("pysrc_rnn_lm", data_dir), workdir)
  metrics = final_eval(loop)
  # Uniform bytes cost 8 bits and the unigram distribution ~4.7 bits per byte.
  assert metrics["eval/bits_per_byte"] < 3.2, metrics
  texts = sample_from_workdir(workdir, "def ", max_length=40, temperature=0.0, num_samples=1)
  assert texts[0].startswith("def ") and len(texts[0]) > 4
  assert all(ch.isprintable() or ch in "\n\t" for ch in texts[0]), texts[0]


def test_digits_transformer_encoder(data_dir, tmp_path):
  loop = train_and_evaluate(config_for("digits_encoder", data_dir), str(tmp_path / "enc"))
  assert final_eval(loop)["eval/accuracy"] > 0.9  # chance: 0.1


def test_digits_wide_resnet_keeps_batch_stats(data_dir, tmp_path):
  loop = train_and_evaluate(config_for("digits_wide_resnet", data_dir), str(tmp_path / "wrn"))
  assert final_eval(loop)["eval/accuracy"] > 0.9  # chance: 0.1
  assert "batch_stats" in loop.state.model_state


def test_tabular_multi_embedding_finds_the_structure(data_dir, tmp_path):
  config = config_for("tabular_multi_embedding", data_dir)
  loop = train_and_evaluate(config, str(tmp_path / "tabular"))
  target = synthetic_tabular.generate(2000, synthetic_tabular.SPLITS["test"][1])["target"]
  baseline = float(np.var(target))  # the MSE of predicting the mean (~4.1)
  mse = final_eval(loop)["eval/mse"]
  assert mse < 0.05 * baseline, (mse, baseline)
