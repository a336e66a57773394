"""Bad configs, names, meshes and datasets (catalogue entries C*, S*, D*): each is reported
before anything is trained or written, with a message naming the config key and its fix."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

from declax import registry, sharding
from declax.data.offline import DatasetUnavailableError
from declax.training import make_optimizer, make_schedule
from declax.training.config_schema import ConfigError, validate_config
from declax.training.from_config import local_batch_size
from tests.multihost_utils import ROOT, worker_env
from tests.reliability.catalogue import CATALOGUE
from tests.subprocess_utils import run_snippet

TRAIN = [sys.executable, os.path.join(ROOT, "scripts", "train.py")]
DIGITS = os.path.join(ROOT, "configs", "digits_mlp.py")


def expect(entry: str, error: BaseException | str) -> str:
  text = str(error)
  assert CATALOGUE[entry] in text, f"{entry}: {CATALOGUE[entry]!r} not in\n{text}"
  return text


def raises(entry: str, kind, fn):
  with pytest.raises(kind) as info:
    fn()
  expect(entry, info.value)
  return info.value


def digits_config():
  import importlib.util

  spec = importlib.util.spec_from_file_location("digits_mlp", DIGITS)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def cli(*args, timeout=180):
  return subprocess.run(TRAIN + ["--config", DIGITS, *args], capture_output=True, text=True,
                        timeout=timeout, env=worker_env(1), cwd=ROOT)


# ---- Command line -----------------------------------------------------------------------------


@pytest.mark.slow
def test_C1_C2_C12_command_line_errors_are_one_message_without_traceback(tmp_path):
  workdir = str(tmp_path / "run")
  unknown = cli("--workdir", workdir, "--config.train.stepz=3")
  wrong_type = cli("--workdir", workdir, "--config.train.steps=ten")
  bad_model = cli("--workdir", workdir, "--config.model.name=MLPP")
  for entry, result in (("C1", unknown), ("C2", wrong_type), ("C12", bad_model)):
    assert result.returncode == 1, (entry, result.stderr[-2000:])
    expect(entry, result.stderr)
    assert "Traceback" not in result.stderr, (entry, result.stderr[-3000:])
  assert "DECLAX_TRACEBACK=1" in bad_model.stderr
  # Intact: nothing was written for the runs that never started.
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))


# ---- Config files -----------------------------------------------------------------------------


def test_C3_unknown_key_in_a_config_file():
  config = digits_config()
  with config.unlocked():
    config.train.eval_evry = 50
  raises("C3", ConfigError, lambda: validate_config(config))


def test_C4_missing_required_key():
  config = digits_config()
  del config.train["steps"]
  raises("C4", ConfigError, lambda: validate_config(config))


def test_C5_unusable_value():
  config = digits_config()
  config.train.batch_size = 0
  raises("C5", ConfigError, lambda: validate_config(config))
  config.train.batch_size = 64
  config.train.steps = -5
  with pytest.raises(ConfigError, match=r"config.train.steps must be an integer >= 0, got -5"):
    validate_config(config)


def test_C13_misspelt_section():
  config = digits_config()
  with config.unlocked():
    config.optimiser = config.optimizer
    del config["optimizer"]
  raises("C13", ConfigError, lambda: validate_config(config))


def test_every_shipped_config_is_valid():
  import glob
  import importlib.util

  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    spec = importlib.util.spec_from_file_location("config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    validate_config(module.get_config())


# ---- Registries -------------------------------------------------------------------------------


def test_C6_unknown_model_name():
  error = raises("C6", registry.RegistryError, lambda: registry.get_model("Transformerlm"))
  assert isinstance(error, KeyError)


def test_C7_model_argument_it_does_not_take():
  error = raises("C7", registry.RegistryArgumentError,
                 lambda: registry.get_model("MLP", layer_width=(8,)))
  assert isinstance(error, TypeError)


def test_C8_unknown_optimizer_name():
  raises("C8", registry.RegistryError, lambda: make_optimizer("lamm", 1e-3))


def test_C9_optimizer_argument_it_does_not_take():
  raises("C9", TypeError, lambda: make_optimizer("adamw", 1e-3, beta2=0.9))


def test_C10_unknown_schedule():
  raises("C10", ValueError, lambda: make_schedule("cosine", learning_rate=1e-3))


def test_C11_unknown_loss_or_metric_layer():
  raises("C11", registry.RegistryError, lambda: registry.get_layer("CrossEntropyLos"))


# ---- Meshes and batches -----------------------------------------------------------------------


def test_S1_mesh_larger_than_the_devices():
  raises("S1", sharding.ShardingError, lambda: sharding.mesh_from_config({"data": 2}))


def test_S2_unknown_mesh_axis():
  raises("S2", sharding.ShardingError, lambda: sharding.mesh_from_config({"model": 2}))


def test_S3_two_free_mesh_axes():
  raises("S3", sharding.ShardingError,
         lambda: sharding.mesh_from_config({"data": -1, "fsdp": -1}))


def test_S4_batch_not_divisible_by_the_data_axis():
  out = run_snippet("""
import json
import declax.layers as tl
from declax.training import Loop, TrainTask, make_optimizer
from declax.training.metric_writers import MultiWriter
from tests.training.training_utils import ArrayBatches
try:
  Loop(tl.Serial(tl.Flatten(), tl.Dense(3)), TrainTask(ArrayBatches(batch_size=6),
       tl.CrossEntropyLoss(), make_optimizer('sgd', 0.1)), mesh={'data': 4},
       writers=MultiWriter([]), print_summary=False)
except Exception as e:
  print(json.dumps({'type': type(e).__name__, 'message': str(e)}))
""", n_devices=4, timeout=120)
  assert out["type"] == "ShardingError"
  expect("S4", out["message"])


def test_S5_sharding_rule_to_an_unknown_mesh_axis():
  raises("S5", sharding.ShardingError, lambda: sharding.rules_from_config({"embed": "model"}))


def test_S6_global_batch_not_divisible_by_the_processes(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  raises("S6", ValueError, lambda: local_batch_size(9))


# ---- Data -------------------------------------------------------------------------------------


def test_D1_unknown_dataset():
  from declax.data import make_pipeline

  raises("D1", ValueError, lambda: make_pipeline("declax_digitz", "train", 8))


def test_D2_dataset_that_would_need_a_download_while_offline(tmp_path, monkeypatch):
  import declax.data.offline as offline
  from declax.data import make_pipeline

  monkeypatch.setattr(offline, "unresolvable_hosts", lambda hosts, timeout=0.5: sorted(hosts))
  error = raises("D2", DatasetUnavailableError,
                 lambda: make_pipeline("mnist", "train", 8, data_dir=str(tmp_path)))
  assert "declax_digits" in str(error)  # offers the datasets that work offline
  assert not any(tmp_path.rglob("*.array_record*"))


def test_D3_unknown_split(digits_dir):
  from declax.data import make_pipeline

  raises("D3", ValueError,
         lambda: make_pipeline("declax_digits", "validation", 8, data_dir=digits_dir))
