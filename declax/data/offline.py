"""Fail fast and clearly when a dataset would have to be downloaded but cannot be.

TFDS's downloader retries each URL ten times with exponential backoff, so on a machine without
network `download_and_prepare()` of e.g. `mnist` fails only after ~200 s. Here a dataset that is
not prepared yet is checked first: the hosts of its URLs are resolved (in parallel, with a
deadline), and if any cannot be resolved a `DatasetUnavailableError` names the dataset, the hosts
tried and the offline datasets declax ships, in well under a second.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence

import tensorflow_datasets as tfds

from declax.errors import DeclaxError

# Probed when a builder does not declare its URLs (`url_infos is None`): TFDS's own host.
FALLBACK_HOSTS = ("storage.googleapis.com",)
DNS_TIMEOUT_S = 0.5
DOWNLOAD_RETRIES = 2


class DatasetUnavailableError(DeclaxError, RuntimeError):
  """A dataset is not prepared locally and cannot be obtained (offline, files missing, ...)."""


def unavailable_error(
    name: str, reason: str, data_dir: str | None = None
) -> DatasetUnavailableError:
  """Builds the error raised for an unobtainable dataset; lists the offline datasets to use."""
  from declax.data.registry import local_dataset_names  # registry imports builders: keep lazy

  where = f" (not prepared in {data_dir})" if data_dir else ""
  local = ", ".join(local_dataset_names())
  return DatasetUnavailableError(
      f"Dataset {name!r} is unavailable{where}: {reason}. Datasets that work offline: {local} "
      "(e.g. config.data.name = 'declax_digits'), or copy an already prepared data dir "
      "(array_record format) there."
  )


def unresolvable_hosts(hosts: Iterable[str], timeout: float = DNS_TIMEOUT_S) -> list[str]:
  """Returns the hosts whose DNS lookup fails or does not answer within `timeout` seconds.

  Lookups run in parallel daemon threads, so a hanging resolver costs at most `timeout`.

  >>> unresolvable_hosts(['localhost'])
  []
  """
  hosts = sorted(set(hosts))
  ok: dict[str, bool] = {}

  def lookup(host: str) -> None:
    try:
      socket.getaddrinfo(host, 443)
      ok[host] = True
    except OSError:
      ok[host] = False

  threads = [threading.Thread(target=lookup, args=(h,), daemon=True) for h in hosts]
  deadline = time.monotonic() + timeout
  for t in threads:
    t.start()
  for t in threads:
    t.join(max(0.0, deadline - time.monotonic()))
  return [h for h in hosts if not ok.get(h, False)]


def declared_hosts(builder: tfds.core.DatasetBuilder) -> list[str]:
  """The hosts in a builder's registered `url_infos` (none for most custom builders)."""
  try:
    urls = list(builder.url_infos or ())
  except Exception:  # noqa: BLE001 - a broken checksums file must not hide the real problem
    urls = []
  return sorted({urllib.parse.urlparse(u).hostname for u in urls} - {None})


@contextlib.contextmanager
def fewer_download_retries(retries: int = DOWNLOAD_RETRIES) -> Iterator[None]:
  """Temporarily lowers TFDS's per-URL retry count (default 10, i.e. ~200 s of backoff)."""
  from tensorflow_datasets.core.download import downloader

  old = downloader.MAX_RETRIES
  downloader.MAX_RETRIES = retries
  try:
    yield
  finally:
    downloader.MAX_RETRIES = old


@contextlib.contextmanager
def _quiet_if(local: bool, name: str) -> Iterator[None]:
  """TFDS prints "Downloading and preparing dataset" to stdout even when nothing downloads;
  for a locally built dataset that line is replaced by one log line."""
  if not local:
    yield
    return
  logging.getLogger(__name__).info("Preparing dataset %s (first use; built locally)", name)
  with contextlib.redirect_stdout(io.StringIO()):
    yield


def download_and_prepare_or_explain(
    builder: tfds.core.DatasetBuilder,
    name: str,
    hosts: Sequence[str] | None = None,
    file_format: str = "array_record",
) -> None:
  """Prepares a builder in `file_format`, or raises `DatasetUnavailableError`.

  Checks DNS for `hosts` first (default: `declared_hosts(builder)`, else `FALLBACK_HOSTS`; pass
  `[]` to skip), then downloads with fewer retries; a connection error during the download is
  reported the same way.
  """
  import requests

  if builder.is_prepared():
    return
  local = hosts is not None and not hosts  # a builder that downloads nothing (declax's own)
  if hosts is None:
    hosts = declared_hosts(builder) or list(FALLBACK_HOSTS)
  bad = unresolvable_hosts(hosts)
  if bad:
    raise unavailable_error(
        name,
        f"it must be downloaded from {hosts}, and DNS cannot resolve {bad} (offline?)",
        builder.data_dir_root,
    )
  try:
    with fewer_download_retries(), _quiet_if(local, name):
      builder.download_and_prepare(file_format=file_format)
  except requests.exceptions.ConnectionError as e:
    raise unavailable_error(
        name, f"the download failed (tried {hosts}): {e}", builder.data_dir_root
    ) from e
  except ModuleNotFoundError as e:
    if e.name != "tensorflow":
      raise
    raise unavailable_error(
        name,
        "TFDS's own builder for it needs TensorFlow to extract the download "
        "(pip install 'declax[tf]', or prepare it elsewhere and copy the data dir)",
        builder.data_dir_root,
    ) from e
