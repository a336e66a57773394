"""Where prepared datasets live: one rule, used by every builder and pipeline."""

from __future__ import annotations

import os

DEFAULT_DATA_DIR = "~/tensorflow_datasets"
DATA_DIR_ENV_VARS = ("DECLAX_DATA_DIR", "TFDS_DATA_DIR")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str:
  """Returns the data dir: the argument, else $DECLAX_DATA_DIR, else $TFDS_DATA_DIR, else
  `~/tensorflow_datasets` (user-expanded, absolute).

  >>> resolve_data_dir('/tmp/tfds')
  '/tmp/tfds'
  """
  if data_dir is None:
    data_dir = next(
        (os.environ[v] for v in DATA_DIR_ENV_VARS if os.environ.get(v)), DEFAULT_DATA_DIR
    )
  return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
