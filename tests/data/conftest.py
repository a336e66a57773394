"""Shared fixtures: declax's offline datasets prepared once per test session in a tmp data dir."""

import os

import pytest
import tensorflow_datasets as tfds

import declax.data as dd

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session", autouse=True)
def _quiet_tfds():
  tfds.disable_progress_bar()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A data dir holding prepared `declax_digits` and `declax_pysrc` (seq128)."""
  path = str(tmp_path_factory.mktemp("tfds"))
  dd.prepare("declax_digits", path)
  dd.prepare("declax_pysrc", path)
  return path


@pytest.fixture(scope="session")
def fashion_data_dir(data_dir) -> str:
  """`data_dir` with `declax_fashion_mnist` prepared too (skips without the Debian files)."""
  if not os.path.isdir(FASHION_DIR):
    pytest.skip(f"{FASHION_DIR} missing: apt-get install dataset-fashion-mnist")
  dd.prepare("declax_fashion_mnist", data_dir)
  return data_dir
