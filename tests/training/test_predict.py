"""Predictions from a Loop and from a workdir; restore for an image model; export round trip."""

import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax import export
from declax.training import Loop, TrainTask
from declax.training.from_config import model_input_specs, restore_from_workdir, train_and_evaluate
from declax.training.predict import predict, predictor_from_workdir
from tests.configs.test_configs import example_inputs, load_config
from tests.training.training_utils import ArrayBatches, tiny_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_loop_predict_is_the_eval_model_on_plain_params(tmp_path):
  model = tiny_classifier(dropout=0.5)
  loop = Loop(model, TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), optax.adamw(3e-3)),
              output_dir=None, print_summary=False)
  loop.run(2)
  x = next(ArrayBatches())[0]
  out = loop.predict(x)
  assert out.shape == (8, 3)
  np.testing.assert_array_equal(out, loop.predict(x))  # dropout is off
  assert all(isinstance(p, jax.Array) for p in jax.tree.leaves(loop.params))
  np.testing.assert_allclose(predict(model, loop.state.variables, x), out, rtol=1e-6)
  assert "learning_rate" not in loop.eval_history and loop.losses  # adamw(3e-3): rate unknown


@pytest.fixture(scope="module")
def digits_workdir(tmp_path_factory):
  config = load_config("digits_mlp").get_config()
  config.model.layer_widths = (16,)
  config.train.update(dict(steps=2, log_every=1, eval_every=2, checkpoint_every=2))
  workdir = tmp_path_factory.mktemp("digits")
  loop = train_and_evaluate(config, workdir, print_summary=False)
  return workdir, config, loop


@pytest.mark.slow
def test_restore_from_workdir_takes_the_image_shapes_from_the_data(digits_workdir):
  workdir, config, loop = digits_workdir
  specs = model_input_specs(config)
  assert specs[0].shape == (1, 8, 8, 1) and specs[0].dtype == np.float32
  model, variables, _, step = restore_from_workdir(workdir)
  assert step == 2
  assert variables["params"]["layers_1"]["kernel"].shape == (64, 16)  # plain arrays
  x = example_inputs(specs[:1], batch=5)
  np.testing.assert_allclose(predictor_from_workdir(workdir)(x), loop.predict(x), rtol=1e-5)


@pytest.mark.slow
def test_export_script_round_trip(digits_workdir, tmp_path):
  workdir, config, loop = digits_workdir
  out = tmp_path / "digits.stablehlo"
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "export.py"),
                           str(workdir), str(out)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "inputs (float32[b,8,8,1])" in result.stdout
  x = example_inputs(model_input_specs(config)[:1], batch=7)
  np.testing.assert_allclose(export.load(out)(x), loop.predict(x), rtol=1e-5, atol=1e-6)


def test_export_script_refuses_a_directory_without_a_run(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "export.py"),
                           str(tmp_path), str(tmp_path / "x")], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
  assert result.returncode == 1
  assert "export.py: error:" in result.stderr and "config.json not found" in result.stderr
