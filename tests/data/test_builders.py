"""The offline builders on real data: digits and stdlib source always, Fashion-MNIST when the
Debian files are installed."""

import gzip
import os

import numpy as np
import pytest

import declax.data as dd
from declax.data.builders import digits, fashion_mnist, pysrc
from declax.data.sources import load_split


def _rows(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
  """Order-free fingerprint of (image, label) pairs."""
  return sorted(img.tobytes() + bytes([int(y)]) for img, y in zip(images, labels, strict=True))


# ---------------------------------------------------------------- declax_digits


@pytest.mark.slow
def test_digits_splits_are_the_fixed_rng0_permutation(data_dir):
  from sklearn.datasets import load_digits

  ref = load_digits()
  images = ref.images.astype(np.uint8)[..., None]
  _, builder = dd.prepare("declax_digits", data_dir)
  assert builder.version == "1.0.0"
  for split, idx in digits.split_indices().items():
    ex = load_split(builder, split)
    assert ex["image"].shape == (len(idx), 8, 8, 1) and ex["image"].dtype == np.uint8
    assert _rows(ex["image"], ex["label"]) == _rows(images[idx], ref.target[idx])
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 1437,
      "test": 360,
  }
  idx = digits.split_indices()
  assert not set(idx["train"]) & set(idx["test"])


def test_prepare_writes_array_record_under_name_and_version(data_dir):
  files = os.listdir(os.path.join(data_dir, "declax_digits", "1.0.0"))
  assert any(".array_record-" in f for f in files) and "dataset_info.json" in files


# ---------------------------------------------------------------- declax_pysrc


def test_windows_cover_every_byte_once_with_one_byte_overlap():
  data = bytes(range(1, 200)) * 3
  w = pysrc.windows(data, 16)
  assert w.shape == (-(-len(data) // 16), 17) and w.dtype == np.uint8
  assert bytes(w[:, :-1].ravel()).rstrip(b"\0") == data  # inputs tile the file
  np.testing.assert_array_equal(w[:-1, -1], w[1:, 0])  # last byte = next window's first
  assert pysrc.windows(b"", 8).shape == (0, 9)


def test_source_files_skip_tests_and_split_every_tenth_file():
  files = pysrc.source_files(pysrc.stdlib_dir())
  assert files == sorted(files) and len(files) > 100
  assert not any(
      part in ("test", "tests", "site-packages", "__pycache__")
      for f in files
      for part in f.split(os.sep)
  )
  split = pysrc.split_files(files)
  assert split["validation"] == files[::10]
  assert sorted(split["train"] + split["validation"]) == files


def test_pysrc_holds_exactly_the_bytes_of_its_files(data_dir):
  _, builder = dd.prepare("declax_pysrc", data_dir)
  assert builder.builder_config.name == "seq128"
  root = pysrc.stdlib_dir()
  files = pysrc.split_files(pysrc.source_files(root))
  for split in ("train", "validation"):
    w = load_split(builder, split)["bytes"]
    assert w.shape[1:] == (129,) and w.dtype == np.uint8
    sizes = [os.path.getsize(os.path.join(root, f)) for f in files[split]]
    assert len(w) == sum(-(-s // 128) for s in sizes)
    assert np.count_nonzero(w[:, :-1]) == sum(sizes)  # no NUL in source: 0 is padding


def test_pysrc_seq_len_picks_or_makes_a_config(tmp_path):
  assert dd.DeclaxPysrc(data_dir=str(tmp_path), seq_len=64).builder_config.name == "seq64"
  custom = dd.DeclaxPysrc(data_dir=str(tmp_path), seq_len=100).builder_config
  assert (custom.name, custom.seq_len) == ("seq100", 100)
  with pytest.raises(ValueError, match="either seq_len or config"):
    dd.DeclaxPysrc(data_dir=str(tmp_path), seq_len=64, config="seq64")
  with pytest.raises(ValueError, match="positive int"):
    dd.DeclaxPysrc(data_dir=str(tmp_path), seq_len=0)


# ---------------------------------------------------------------- declax_fashion_mnist


def _write_idx(path, array: np.ndarray) -> None:
  header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trips(tmp_path):
  a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  _write_idx(tmp_path / "a.gz", a)
  np.testing.assert_array_equal(fashion_mnist.read_idx(str(tmp_path / "a.gz")), a)
  (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01x")
  with pytest.raises(ValueError, match="not an IDX file"):
    fashion_mnist.read_idx(str(tmp_path / "bad"))


def test_fashion_missing_files_name_the_path_and_the_package(tmp_path):
  src = tmp_path / "nowhere"
  with pytest.raises(dd.DatasetUnavailableError) as err:
    dd.prepare("declax_fashion_mnist", str(tmp_path / "data"), source_dir=str(src))
  msg = str(err.value)
  assert str(src / "train-images-idx3-ubyte.gz") in msg
  assert "apt-get install dataset-fashion-mnist" in msg


def test_fashion_source_dir_from_env(tmp_path, monkeypatch):
  monkeypatch.setenv("DECLAX_FASHION_MNIST_DIR", str(tmp_path))
  assert dd.DeclaxFashionMnist(data_dir=str(tmp_path)).source_dir == str(tmp_path)
  monkeypatch.delenv("DECLAX_FASHION_MNIST_DIR")
  assert fashion_mnist.resolve_source_dir() == fashion_mnist.DEFAULT_SOURCE_DIR


def test_fashion_from_small_idx_files(tmp_path):
  rng = np.random.default_rng(0)
  for split, (img_file, lbl_file) in fashion_mnist.FILES.items():
    n = 30 if split == "train" else 7
    _write_idx(tmp_path / img_file, rng.integers(0, 256, (n, 28, 28)))
    _write_idx(tmp_path / lbl_file, np.arange(n) % 10)
  x, y = dd.load_split_arrays(
      "declax_fashion_mnist", "test", str(tmp_path / "data"), source_dir=str(tmp_path)
  )
  assert x.shape == (7, 28, 28, 1) and sorted(y.tolist()) == list(range(7))


@pytest.mark.slow
def test_fashion_mnist_matches_the_idx_files(fashion_data_dir):
  _, builder = dd.prepare("declax_fashion_mnist", fashion_data_dir)
  assert builder.info.features["label"].names[0] == "t-shirt_top"
  for split, (_, lbl_file) in fashion_mnist.FILES.items():
    ex = load_split(builder, split)
    labels = fashion_mnist.read_idx(os.path.join(fashion_mnist.DEFAULT_SOURCE_DIR, lbl_file))
    assert ex["image"].shape == (len(labels), 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(ex["label"]), np.bincount(labels))
  assert builder.info.splits["train"].num_examples == 60000


def test_digits_without_scikit_learn_is_a_clear_error(monkeypatch):
  from declax.data.offline import DatasetUnavailableError

  monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(DatasetUnavailableError, match=r"declax\[digits\]"):
    digits.load_csv()
