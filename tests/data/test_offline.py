"""Offline handling: datasets that would download fail fast with a clear DatasetUnavailableError."""

import socket
import threading

import pytest
import requests
from tensorflow_datasets.core.download import downloader

import declax.data as dd
from declax.data import offline


def _no_dns(*args, **kwargs):
  raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def hanging_dns(monkeypatch):
  """A resolver that never answers until the test ends; yields the event that releases it."""
  release = threading.Event()
  monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: release.wait(60) and _no_dns())
  yield release
  release.set()


def test_unresolvable_hosts(monkeypatch):
  assert offline.unresolvable_hosts(["localhost"]) == []
  monkeypatch.setattr(socket, "getaddrinfo", _no_dns)
  assert offline.unresolvable_hosts(["b.example", "a.example", "a.example"]) == [
      "a.example",
      "b.example",
  ]


def test_a_hanging_resolver_costs_only_the_timeout(hanging_dns):
  assert offline.unresolvable_hosts(["a.example", "b.example"], timeout=0.2) == [
      "a.example",
      "b.example",
  ]
  assert not hanging_dns.is_set()  # answered while the resolver was still stuck


@pytest.mark.parametrize("dns", ["fails", "hangs"])
def test_offline_tfds_dataset_fails_fast_and_says_what_to_do(tmp_path, monkeypatch, dns, request):
  if dns == "fails":
    monkeypatch.setattr(socket, "getaddrinfo", _no_dns)
  else:
    request.getfixturevalue("hanging_dns")
  from tensorflow_datasets.core import dataset_builder

  downloads = []  # TFDS alone would retry its downloads for ~200 s: it must not be reached
  monkeypatch.setattr(dataset_builder.DatasetBuilder, "download_and_prepare",
                      lambda self, **kwargs: downloads.append(self.name))
  with pytest.raises(dd.DatasetUnavailableError) as err:
    dd.make_pipeline("mnist", "train", 32, data_dir=str(tmp_path))
  assert downloads == []
  msg = str(err.value)
  assert "'mnist'" in msg and "storage.googleapis.com" in msg and str(tmp_path) in msg
  assert all(n in msg for n in ("declax_digits", "declax_fashion_mnist", "declax_pysrc"))


def test_connection_error_during_download_is_explained(tmp_path, monkeypatch):
  monkeypatch.setattr(offline, "unresolvable_hosts", lambda hosts: [])  # DNS works...
  retries = []

  def download_and_prepare(self, **kwargs):  # ...but the download does not
    retries.append(downloader.MAX_RETRIES)
    raise requests.exceptions.ConnectionError("Max retries exceeded")

  from tensorflow_datasets.core import dataset_builder

  monkeypatch.setattr(
      dataset_builder.DatasetBuilder, "download_and_prepare", download_and_prepare
  )
  with pytest.raises(dd.DatasetUnavailableError, match="download failed") as err:
    dd.prepare("mnist", str(tmp_path))
  assert "declax_digits" in str(err.value)
  assert retries == [offline.DOWNLOAD_RETRIES] and downloader.MAX_RETRIES == 10  # restored


def test_missing_tensorflow_for_extraction_is_explained(tmp_path, monkeypatch):
  monkeypatch.setattr(offline, "unresolvable_hosts", lambda hosts: [])

  def download_and_prepare(self, **kwargs):
    raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

  from tensorflow_datasets.core import dataset_builder

  monkeypatch.setattr(
      dataset_builder.DatasetBuilder, "download_and_prepare", download_and_prepare
  )
  with pytest.raises(dd.DatasetUnavailableError, match=r"declax\[tf\]"):
    dd.prepare("mnist", str(tmp_path))


def test_local_builders_never_probe_the_network(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: calls.append(a) or _no_dns())
  x, y = dd.load_split_arrays("declax_digits", "test", str(tmp_path))
  assert len(y) == 360 and calls == []
