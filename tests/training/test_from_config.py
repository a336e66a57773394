"""Config -> objects glue (with the digits dataset, prepared on first use)."""

import json

import ml_collections
import numpy as np
import pytest

from declax.registry import RegistryError
from declax.training import from_config


def _config(**train):
  import importlib.util
  import os

  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "digits_mlp.py")
  spec = importlib.util.spec_from_file_location("digits_mlp", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.model.layer_widths = (16,)
  config.train.update(dict(steps=4, log_every=2, eval_every=4, checkpoint_every=4), **train)
  return config


def test_build_model_optimizer_and_hparams():
  config = _config()
  model = from_config.build_model(config)
  assert "Dense_16" in str(model)
  tx, schedule = from_config.build_optimizer(config)
  assert float(schedule(0)) == 0.0 and float(schedule(2)) == pytest.approx(2e-3)  # warmup 4 // 2
  flat = from_config.flatten_config(config)
  assert flat["model.layer_widths"] == (16,) and flat["train.steps"] == 4
  assert from_config.to_dict(ml_collections.ConfigDict({"a": [1, 2]})) == {"a": (1, 2)}


def test_train_and_evaluate_writes_config_and_resumes(tmp_path, capsys):
  config = _config()
  loop = from_config.train_and_evaluate(config, tmp_path, print_summary=False)
  assert loop.step == 4 and not loop.preempted
  assert loop.eval_history[-1][0] == 4
  assert 0.0 <= loop.eval_history[-1][1]["eval/accuracy"] <= 1.0
  saved = json.load(open(tmp_path / "config.json"))
  assert saved["train"]["steps"] == 4 and saved["model"]["name"] == "MLP"
  # A longer run in the same workdir continues from step 4.
  config.train.steps = 6
  again = from_config.train_and_evaluate(config, tmp_path, print_summary=False)
  assert again.step == 6 and [s for s, _ in again.losses] == [5, 6]
  assert "step 6/6" in capsys.readouterr().out


def test_eval_covers_the_whole_split_by_default():
  task = from_config.build_eval_task(_config())
  batches = list(task.batches())
  assert len(batches) == 3 and sum(len(b[1]) for b in batches) == 360
  again = list(task.batches())
  np.testing.assert_array_equal(batches[0][0], again[0][0])


def test_config_errors():
  config = _config()
  config.model.name = "MPL"
  with pytest.raises(RegistryError, match="Did you mean 'MLP'"):
    from_config.build_model(config)
  config = _config(loss="CrossEntropyLos")
  with pytest.raises(RegistryError, match="Did you mean 'CrossEntropyLoss'"):
    from_config.build_train_task(config)
  config = _config()
  config.optimizer.name = "adamm"
  with pytest.raises(RegistryError, match="Unknown optimizer 'adamm'"):
    from_config.build_optimizer(config)
  config = _config()
  config.schedule.name = "cosine_warmup"
  with pytest.raises(ValueError, match="Unknown schedule"):
    from_config.build_optimizer(config)
