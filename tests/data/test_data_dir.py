"""Data dir resolution: argument, $DECLAX_DATA_DIR, $TFDS_DATA_DIR, ~/tensorflow_datasets."""

import os

from declax.data import resolve_data_dir


def test_precedence(monkeypatch, tmp_path):
  monkeypatch.delenv("DECLAX_DATA_DIR", raising=False)
  monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
  assert resolve_data_dir() == os.path.expanduser("~/tensorflow_datasets")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  assert resolve_data_dir() == str(tmp_path / "tfds")
  monkeypatch.setenv("DECLAX_DATA_DIR", str(tmp_path / "declax"))
  assert resolve_data_dir() == str(tmp_path / "declax")
  assert resolve_data_dir(tmp_path / "arg") == str(tmp_path / "arg")
  assert resolve_data_dir("~/x") == os.path.expanduser("~/x")
