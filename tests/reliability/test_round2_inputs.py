"""Reliability round 2 (issue 17), bad inputs: config values that trained silently wrong, the
command line, fake devices and datasets (catalogue entries R17-R26, R31-R35). Each test failed
before the fix."""

from __future__ import annotations

import logging
import os

import pytest

from declax.training.config_schema import ConfigError
from tests.reliability.catalogue import CATALOGUE


def expect(entry: str, error: BaseException | str) -> str:
  text = str(error)
  assert CATALOGUE[entry] in text, f"{entry}: {CATALOGUE[entry]!r} not in\n{text}"
  return text

# ---- Config values that trained silently wrong ---------------------------------------------------


def _digits_config(**changes):
  from tests.reliability.test_bad_config import digits_config

  config = digits_config()
  for path, value in changes.items():
    section, key = path.split("__")
    config[section][key] = value
  return config


@pytest.mark.parametrize("entry,changes", [
    ("R17", dict(schedule__learning_rate=-1e-3)),
    ("R18", dict(schedule__learning_rate=float("nan"))),
    ("R18", dict(schedule__learning_rate=float("inf"))),
    ("R19", dict(optimizer__clip_norm=0.0)),
    ("R19", dict(optimizer__clip_norm=-1.0)),
    ("R20", dict(train__loss="Accuracy")),
    ("R21", dict(train__seed=2**63)),
    ("R22", dict(model__n_classes=0)),
])
def test_R17_to_R22_config_values_that_would_train_wrong(entry, changes):
  from declax.training.config_schema import validate_config

  with pytest.raises(ConfigError) as info:
    validate_config(_digits_config(**changes))
  expect(entry, info.value)


def test_R23_more_eval_batches_than_the_split_are_capped(digits_dir, caplog):
  from declax.training.from_config import build_eval_task

  config = _digits_config(data__data_dir=digits_dir, data__n_eval_batches=10_000)
  with caplog.at_level(logging.WARNING):
    task = build_eval_task(config)
  expect("R23", caplog.text)
  assert task.n_eval_batches < 10_000
  assert len(list(task.batches())) == task.n_eval_batches


@pytest.mark.slow
def test_R24_a_rerun_below_the_saved_step_says_so_and_keeps_the_config(tmp_path, digits_dir,
                                                                      caplog):
  from declax.training.from_config import train_and_evaluate

  config = _digits_config(data__data_dir=digits_dir, train__steps=3, train__batch_size=8)
  config.data.eval_split = None
  train_and_evaluate(config, tmp_path)
  config.train.steps = 2
  with caplog.at_level(logging.WARNING):
    loop = train_and_evaluate(config, tmp_path)
  expect("R24", caplog.text)
  assert loop.step == 3
  assert {"config.3.json", "config.json"} <= set(os.listdir(tmp_path))


# ---- The command line ---------------------------------------------------------------------------


@pytest.mark.slow
def test_R25_R26_config_files_that_give_no_config_and_an_empty_workdir(tmp_path):
  import subprocess
  import sys

  from tests.multihost_utils import ROOT, worker_env

  files = {"raises.py": "def get_config():\n  raise RuntimeError('boom')\n",
           "syntax.py": "def get_config(:\n", "none.py": "def get_config():\n  return None\n"}
  for name, text in files.items():
    (tmp_path / name).write_text(text)
  train = [sys.executable, os.path.join(ROOT, "scripts", "train.py")]

  def cli(config, workdir=str(tmp_path / "run")):
    result = subprocess.run(train + ["--config", config, f"--workdir={workdir}",
                                     "--config.train.steps=3"],
                            capture_output=True, text=True, timeout=180, env=worker_env(1),
                            cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr.strip().splitlines()[-1]

  for name in [*files, "missing.py"]:
    line = cli(str(tmp_path / name))
    expect("R25", line)
    assert str(tmp_path / name) in line
  expect("R26", cli(os.path.join(ROOT, "configs", "digits_mlp.py"), workdir=""))
  assert not os.path.exists(os.path.join(ROOT, ".declax.lock"))


# ---- Flaky under load: XLA's rendezvous with too many fake devices ------------------------------


def test_R31_too_many_fake_devices_for_the_cores_get_a_longer_collective_timeout():
  from declax.cli import COLLECTIVE_TIMEOUT_FLAG, fake_device_flags

  flags, warning = fake_device_flags("--xla_force_host_platform_device_count=4", cores=2)
  expect("R31", warning)
  assert f"{COLLECTIVE_TIMEOUT_FLAG}=600" in flags
  assert fake_device_flags("--xla_force_host_platform_device_count=2", cores=2)[1] is None
  assert fake_device_flags(flags, cores=2) == (flags, None)  # already set: left alone


ABORTING = """
import sys, os
print("F external/xla/xla/service/rendezvous.cc:1 Expected 4 threads to join the rendezvous, "
      "but only 2 of them arrived on time.", file=sys.stderr, flush=True)
os.abort()
"""


def test_R31_the_test_helpers_explain_the_rendezvous_abort_before_and_after_it(monkeypatch,
                                                                              capsys):
  import tests.subprocess_utils as su
  from tests.multihost_utils import Workers

  monkeypatch.setattr(su, "cores", lambda: 2)
  env = su.device_env(4)  # before: the flag only, and XLA's one C++ line if it aborted
  expect("R31", capsys.readouterr().err)  # the sentence declax-train prints, up front
  assert "--xla_cpu_collective_call_terminate_timeout_seconds=600" in env["XLA_FLAGS"]
  su.device_env(2)
  assert capsys.readouterr().err == ""  # as many devices as cores: nothing to explain
  with pytest.raises(AssertionError, match="rendezvous aborted this process: its 4 fake CPU "
                     "devices on 2 cores"):
    su.run_snippet(ABORTING, n_devices=4, timeout=60)
  with Workers(ABORTING, n_devices=4) as workers:
    result = workers.wait(timeout=60)[0]
  assert result.returncode != 0 and "rendezvous aborted this process" in result.stderr
  expect("R31", capsys.readouterr().err)


# ---- Datasets: damaged or missing files, a file as data dir, an empty split ---------------------


def test_R32_a_file_as_data_dir(tmp_path):
  import declax.data as dd
  from declax.data.offline import DatasetUnavailableError

  (tmp_path / "data").write_text("not a directory")
  with pytest.raises(DatasetUnavailableError) as info:
    dd.make_pipeline("declax_digits", "train", 8, data_dir=str(tmp_path / "data"))
  expect("R32", info.value)


def test_R33_an_empty_split(digits_dir):
  import declax.data as dd
  from declax.data.offline import DatasetUnavailableError

  with pytest.raises(DatasetUnavailableError) as info:
    dd.make_pipeline("declax_digits", "train[:0]", 8, data_dir=digits_dir)
  expect("R33", info.value)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_R34_a_damaged_or_missing_prepared_file(digits_dir, tmp_path, damage):
  import glob
  import shutil

  import declax.data as dd
  from declax.data.offline import DatasetUnavailableError

  copy = str(tmp_path / "tfds")
  shutil.copytree(digits_dir, copy)
  (shard,) = glob.glob(os.path.join(copy, "declax_digits", "*", "*-train.array_record-*"))
  if damage == "missing":
    os.remove(shard)
  else:
    with open(shard, "r+b") as f:
      f.truncate(1000)
  with pytest.raises(DatasetUnavailableError) as info:
    next(iter(dd.make_pipeline("declax_digits", "train", 8, data_dir=copy, in_memory=False)))
  expect("R34", info.value)


def test_R35_a_data_dir_that_cannot_be_written_to_prepare(tmp_path, monkeypatch):
  import declax.data as dd
  import declax.data.sources as sources
  from declax.data.offline import DatasetUnavailableError

  def read_only(builder, *args, **kwargs):
    raise PermissionError(13, "Permission denied", str(tmp_path))

  monkeypatch.setattr(sources, "download_and_prepare_or_explain", read_only)  # (tests run as
  with pytest.raises(DatasetUnavailableError) as info:                          # root here)
    dd.make_pipeline("declax_digits", "train", 8, data_dir=str(tmp_path))
  expect("R35", info.value)
