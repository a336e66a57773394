"""Fixtures of the reliability tests: a prepared `declax_digits` for the training workers."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
  """A data dir holding a prepared `declax_digits` (scikit-learn's bundled digits, offline)."""
  import tensorflow_datasets as tfds

  import declax.data as dd

  tfds.disable_progress_bar()
  path = str(tmp_path_factory.mktemp("tfds"))
  dd.prepare("declax_digits", path)
  return path


@pytest.fixture(scope="session")
def straight_run(digits_dir, tmp_path_factory) -> str:
  """The workdir of one uninterrupted `train_worker.py` run (losses and final parameters)."""
  from tests.reliability.torture_utils import run_worker

  workdir = str(tmp_path_factory.mktemp("straight"))
  result = run_worker(workdir, digits_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir
