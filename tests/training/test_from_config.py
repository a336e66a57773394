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


@pytest.mark.slow
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
  assert again.step == 6 and [s for s, _ in again.losses] == [6]  # one report: the end
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
  with pytest.raises(RegistryError, match="did you mean 'MLP'"):
    from_config.build_model(config)
  config = _config(loss="CrossEntropyLos")
  with pytest.raises(RegistryError, match="did you mean 'CrossEntropyLoss'"):
    from_config.build_train_task(config)
  config = _config()
  config.optimizer.name = "adamm"
  with pytest.raises(RegistryError, match="Unknown optimizer 'adamm'"):
    from_config.build_optimizer(config)
  config = _config()
  config.schedule.name = "cosine_warmup"
  with pytest.raises(ValueError, match="Unknown schedule"):
    from_config.build_optimizer(config)


def test_base_config_fills_what_a_config_leaves_out():
  from declax.training import default_config
  from declax.training.config_schema import SECTIONS, resolve_config

  config = ml_collections.ConfigDict(dict(
      model=dict(name="MLP"), data=dict(name="declax_digits"), optimizer=dict(name="sgd"),
      schedule=dict(learning_rate=0.1), train=dict(steps=3, batch_size=8, seed=1, loss="L2Loss")))
  resolved = resolve_config(config)
  base = default_config.get_config()
  assert resolved.train.log_every == base.train.log_every == 100
  assert resolved.data.train_split == "train" and resolved.data.eval_split is None
  assert resolved.mesh.to_dict() == base.mesh.to_dict()
  # The schema is the base config's keys: nothing is listed twice.
  assert SECTIONS["train"] == tuple(base.train.keys())
  # Open sections replace the base's whole: a missing mesh axis is 1, not the base's -1.
  config.mesh = dict(fsdp=1)
  assert resolve_config(config).mesh.to_dict() == {"fsdp": 1}


def _modes(layer, seen=None):
  import dataclasses

  import flax.linen as nn

  found = {layer.mode} if isinstance(getattr(layer, "mode", None), str) else set()
  for field in dataclasses.fields(layer):
    value = getattr(layer, field.name, None) if field.name not in ("parent", "name") else None
    for child in value if isinstance(value, (tuple, list)) else [value]:
      if isinstance(child, nn.Module):
        found |= _modes(child)
  return found


def test_build_model_sets_the_mode_on_the_whole_tree():
  config = _config()
  config.model = dict(name="TransformerLM", vocab_size=16, d_model=8, d_ff=8, n_layers=1,
                      n_heads=1, max_len=8)
  assert _modes(from_config.build_model(config)) == {"train"}
  assert _modes(from_config.build_model(config, mode="predict")) == {"predict"}
