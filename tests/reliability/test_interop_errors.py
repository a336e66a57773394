"""Bad input in library use: Linen modules that cannot be layers, the CLI without a workdir,
exporting a directory that holds no training run."""

from __future__ import annotations

import os
import subprocess
import sys

import flax.linen as nn
import pytest

import declax.layers as tl
from tests.multihost_utils import ROOT
from tests.reliability.catalogue import CATALOGUE


class TwoInputs(nn.Module):
  @nn.compact
  def __call__(self, a, b):
    return nn.Dense(3)(a) + b


def expect(entry: str, text: str) -> None:
  assert CATALOGUE[entry] in text, f"{entry}: {CATALOGUE[entry]!r} not in\n{text}"


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_I1_a_linen_module_whose_call_cannot_take_the_stack_items():
  with pytest.raises(tl.LinenArityError) as info:
    tl.Serial(nn.Dense(4), TwoInputs())
  assert isinstance(info.value, TypeError)
  expect("I1", str(info.value))


def test_I2_linen_wraps_something_that_is_not_a_module():
  with pytest.raises(tl.LinenArityError) as info:
    tl.Linen(lambda x: x)
  expect("I2", str(info.value))


def test_I3_training_without_a_workdir():
  result = _script("train.py", "--config", os.path.join(ROOT, "configs", "digits_mlp.py"))
  assert result.returncode == 1
  expect("I3", result.stderr)
  assert len(result.stderr.strip().splitlines()) == 1


def test_I4_exporting_a_directory_without_a_training_run(tmp_path):
  result = _script("export.py", str(tmp_path), str(tmp_path / "model.stablehlo"))
  assert result.returncode == 1
  expect("I4", result.stderr)
  assert not (tmp_path / "model.stablehlo").exists()
