"""Every config in configs/: runnable as is (a few steps at tiny size) and, marked slow, reaching
its advertised quality end to end."""

from __future__ import annotations

import glob
import importlib.util
import os
import time

import numpy as np
import pytest

from declax.training.from_config import model_input_specs, train_and_evaluate
from declax.training.predict import predict_from_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs",
                                                                            "*.py")))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"

# Model sizes for a smoke run that compiles in seconds; applied to the keys a config has.
TINY_MODEL_KEYS = dict(layer_widths=(8,), filters=(4,), hidden=(8,), d_model=16, d_ff=32,
                       n_layers=1, n_heads=2, base_width=4)


def load_config(name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs",
                                                                   f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _launch_command(name: str) -> str:
  return f"python scripts/train.py --config configs/{name}.py --workdir"


def _needs_launcher(name: str, module) -> None:
  """Every config's docstring carries the command that launches it."""
  doc = module.__doc__ or ""
  assert _launch_command(name) in doc or f"declax-train --config configs/{name}.py" in doc, (
      f"configs/{name}.py: its docstring must give the launch command")


def _needs_data(config) -> None:
  if "fashion_mnist" in config.data.name and not os.path.isdir(FASHION_DIR):
    pytest.skip(f"{FASHION_DIR} missing: apt-get install dataset-fashion-mnist")


def test_all_expected_configs_exist():
  assert {"digits_mlp", "fashion_mnist_mlp", "fashion_mnist_cnn", "pysrc_lm"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_sections_and_launch_command(name):
  module = load_config(name)
  _needs_launcher(name, module)
  config = module.get_config()
  assert {"model", "data", "optimizer", "schedule", "train", "mesh", "sharding_rules"} <= set(
      config.keys())
  assert {"steps", "batch_size", "eval_every", "checkpoint_every", "log_every", "seed"} <= set(
      config.train.keys())


# digits_mlp in the quick subset; the others take 15-100 s each on 2 shared cores (CI runs all).
@pytest.mark.parametrize("name", [
    n if n == "digits_mlp" else pytest.param(n, marks=pytest.mark.slow) for n in CONFIGS])
def test_config_runs_a_few_steps_at_tiny_size(name, tmp_path):
  module = load_config(name)
  _needs_launcher(name, module)
  config = module.get_config()
  _needs_data(config)
  if config.get("experiment"):
    pytest.skip(f"{name} runs its own experiment ({config.experiment}); its smoke run is in "
                "tests/configs/test_text_configs.py")
  config.model.update({k: v for k, v in TINY_MODEL_KEYS.items() if k in config.model})
  config.train.update(dict(steps=3, batch_size=8, log_every=1, eval_every=3,
                           checkpoint_every=3))
  config.data.update(dict(eval_batch_size=8, n_eval_batches=2))
  loop = train_and_evaluate(config, tmp_path, print_summary=False)
  assert loop.step == 3 and len(loop.losses) == 3
  assert all(np.isfinite(loss) for _, loss in loop.losses)
  step, results = loop.eval_history[-1]
  assert step == 3 and all(np.isfinite(v) for v in results.values())
  assert os.listdir(tmp_path / "checkpoints") == ["3"]
  # The workdir gives the same predictions as the loop (restore takes the data's input shapes).
  inputs = example_inputs(model_input_specs(config)[: loop.model.n_in], batch=2)
  np.testing.assert_allclose(predict_from_workdir(tmp_path, inputs), loop.predict(inputs),
                             rtol=1e-5, atol=1e-5)


def example_inputs(specs, batch):
  """Random inputs of the given shapes (batch `batch`): floats ~N(0,1), integers in [0, 2)."""
  rng = np.random.RandomState(0)
  arrays = [rng.randn(batch, *s.shape[1:]).astype(s.dtype) if np.issubdtype(s.dtype, np.floating)
            else rng.randint(0, 2, (batch, *s.shape[1:])).astype(s.dtype) for s in specs]
  return arrays[0] if len(arrays) == 1 else tuple(arrays)


# ---- End to end (minutes) ----------------------------------------------------------------------

TARGETS = {
    "digits_mlp": ("eval/accuracy", ">=", 0.97),
    "fashion_mnist_mlp": ("eval/accuracy", ">=", 0.87),
    "fashion_mnist_cnn": ("eval/accuracy", ">=", 0.89),
    "pysrc_lm": ("eval/bits_per_byte", "<=", 3.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_config_reaches_its_target(name, tmp_path):
  config = load_config(name).get_config()
  _needs_data(config)
  start = time.perf_counter()
  loop = train_and_evaluate(config, tmp_path, print_summary=False)
  wall = time.perf_counter() - start
  metric, op, target = TARGETS[name]
  value = loop.eval_history[-1][1][metric]
  print(f"\n{name}: {metric} = {value:.4f} after {loop.step} steps in {wall:.0f} s")
  assert value >= target if op == ">=" else value <= target
