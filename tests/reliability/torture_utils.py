"""Helpers shared by the crash/preemption/determinism tests: run `train_worker.py`, read back
the losses and parameters it left, and look at the checkpoint directory."""

from __future__ import annotations

import json
import os
import re

import numpy as np

from tests.multihost_utils import ROOT, WorkerResult, Workers

WORKER = os.path.join(ROOT, "tests", "reliability", "train_worker.py")
STEPS = 32
CHECKPOINT_EVERY = 4
KEEP = 2


def worker_args(workdir: str, data_dir: str, *extra: str, steps: int = STEPS) -> list[str]:
  return ["--workdir", workdir, "--data-dir", data_dir, "--steps", str(steps),
          "--checkpoint-every", str(CHECKPOINT_EVERY), "--keep", str(KEEP), *extra]


def run_worker(workdir: str, data_dir: str, *extra: str, timeout: float = 180,
               steps: int = STEPS) -> WorkerResult:
  """One uninterrupted (or self-killing) run of the worker; returns its result."""
  with Workers(WORKER, 1, worker_args(workdir, data_dir, *extra, steps=steps)) as workers:
    return workers.wait(timeout)[0]


def resumed_step(result: WorkerResult) -> int | None:
  """The step a worker started from (`resumed N`), None if it died before saying."""
  found = re.search(r"^resumed (\d+)$", result.stdout, re.M)
  return int(found.group(1)) if found else None


def read_losses(workdir: str, process: int = 0) -> dict[int, set[str]]:
  """`{step: {loss as float.hex, ...}}` over every run that reported that step."""
  path = os.path.join(workdir, f"losses-p{process}.jsonl")
  seen: dict[int, set[str]] = {}
  with open(path) as f:
    for line in f:
      try:
        entry = json.loads(line)
      except json.JSONDecodeError:  # a line cut short by SIGKILL
        continue
      seen.setdefault(entry["step"], set()).add(entry["loss"])
  return seen


def read_params(workdir: str, process: int = 0) -> dict[str, np.ndarray]:
  with np.load(os.path.join(workdir, f"params-p{process}.npz")) as data:
    return {k: data[k] for k in data.files}


def assert_bitwise_equal(params: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
  assert sorted(params) == sorted(expected)
  for name in expected:
    assert params[name].dtype == expected[name].dtype
    assert params[name].tobytes() == expected[name].tobytes(), f"{name} differs"


def checkpoint_entries(workdir: str) -> tuple[list[int], list[str]]:
  """`(committed steps, other entries)` of `workdir/checkpoints` (temporaries, foreign files)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return [], []
  names = sorted(os.listdir(directory))
  steps = sorted(int(n) for n in names if n.isdigit())
  return steps, [n for n in names if not n.isdigit()]
