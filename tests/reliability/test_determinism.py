"""Determinism: the same config and seed give bitwise identical results in two separate
processes on CPU (see docs/errors.md, "Determinism", for what changes the bits: the number of
CPU threads or devices, XLA flags, GPU/TPU atomics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.multihost_utils import ROOT, worker_env
from tests.reliability.torture_utils import (
    assert_bitwise_equal,
    read_losses,
    read_params,
    run_worker,
)

TIMING = ("per_sec", "eta", "elapsed", "uptime", "time")


@pytest.mark.slow
def test_two_processes_same_seed_identical_losses_and_params(tmp_path, digits_dir,
                                                             straight_run):
  result = run_worker(str(tmp_path), digits_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert read_losses(str(tmp_path)) == read_losses(straight_run)
  assert_bitwise_equal(read_params(str(tmp_path)), read_params(straight_run))


def _cli_metrics(workdir, digits_dir, *overrides) -> list[dict]:
  args = [sys.executable, os.path.join(ROOT, "scripts", "train.py"),
          "--config", os.path.join(ROOT, "configs", "digits_mlp.py"), "--workdir", str(workdir),
          "--config.model.layer_widths=(16,)", "--config.train.steps=6",
          "--config.train.log_every=1", "--config.data.eval_batch_size=360", *overrides]
  env = worker_env(1, {"DECLAX_DATA_DIR": digits_dir})
  result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = []
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    row = json.loads(line)
    values = {k: v for k, v in row.items()
              if isinstance(v, float) and not any(t in k for t in TIMING)}
    if values:
      rows.append({"step": row["step"], **values})
  return rows


@pytest.mark.slow
def test_same_config_and_seed_in_two_cli_runs_log_identical_metrics(tmp_path, digits_dir):
  first = _cli_metrics(tmp_path / "a", digits_dir)
  second = _cli_metrics(tmp_path / "b", digits_dir)
  assert [r["step"] for r in first if "train/loss" in r] == list(range(1, 7))
  assert any("eval/accuracy" in r for r in first)
  assert first == second  # every float, bit for bit (JSON keeps a float's repr)
  other_seed = _cli_metrics(tmp_path / "c", digits_dir, "--config.train.seed=1")
  assert other_seed != first  # the comparison above can fail
