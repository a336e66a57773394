"""Bad data, bad steps, bad work directories and bad checkpoints in a training run (catalogue
entries T*, K*, D4): each stops the run with the documented error, and every checkpoint that
was saved before is still there and still restores."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax.training import (
    CheckpointMismatchError,
    Loop,
    NonFiniteLossError,
    TrainTask,
    make_optimizer,
)
from declax.training.checkpoints import CheckpointCorruptedError
from declax.training.metric_writers import MultiWriter
from declax.training.reporting import NonFiniteInputError
from declax.training.workdir import LOCK_NAME, WorkdirError, WorkdirLockedError
from tests.multihost_utils import ROOT, worker_env
from tests.reliability.catalogue import CATALOGUE
from tests.training.training_utils import ArrayBatches, tiny_classifier


def expect(entry: str, error: BaseException | str) -> str:
  text = str(error)
  assert CATALOGUE[entry] in text, f"{entry}: {CATALOGUE[entry]!r} not in\n{text}"
  return text


def make_loop(output_dir=None, data=None, model=None, every=2, keep=3, **kwargs) -> Loop:
  task = TrainTask(data if data is not None else ArrayBatches(), tl.CrossEntropyLoss(),
                   make_optimizer("adam", 1e-2), n_steps_per_checkpoint=every)
  return Loop(model or tiny_classifier(), task, output_dir=output_dir, writers=MultiWriter([]),
              log_every=1, keep_checkpoints=keep, print_summary=False, **kwargs)


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


class Poisoned(ArrayBatches):
  """`ArrayBatches` whose batch `index` is scaled by `scale` or gets `value` at one entry."""

  def __init__(self, index, scale=None, values=None, **kwargs):
    super().__init__(**kwargs)
    self.bad_index, self.scale, self.values = index, scale, values

  def __next__(self):
    index = self.index
    x, *rest = super().__next__()
    if index == self.bad_index:
      x = x.copy()
      if self.scale is not None:
        with np.errstate(over="ignore"):  # overflowing to inf is the point
          x *= self.scale
      for position, value in enumerate(self.values or ()):
        x.flat[position] = value
    return (x, *rest)


# ---- Training data and steps --------------------------------------------------------------------


def test_T1_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path):
  loop = make_loop(tmp_path, data=Poisoned(2, scale=np.float32(3e38)), check_inputs=False)
  with pytest.raises(NonFiniteLossError) as info:
    loop.run(6)
  expect("T1", info.value)
  assert info.value.step == 3 and info.value.last_checkpoint == 2
  loop.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  resumed = make_loop(tmp_path)
  assert resumed.step == 2
  resumed.close()


def test_T2_nan_in_the_inputs_stops_before_training_on_them(tmp_path):
  loop = make_loop(tmp_path, data=Poisoned(2, values=(np.nan, np.inf)))
  loop.run(2)
  params = leaves(loop.params)
  with pytest.raises(NonFiniteInputError) as info:
    loop.run(2)
  expect("T2", info.value)
  assert info.value.step == 3 and loop.step == 2 and info.value.last_checkpoint == 2
  assert isinstance(info.value, NonFiniteLossError)  # handlers of NaN losses see it too
  for a, b in zip(leaves(loop.params), params, strict=True):
    np.testing.assert_array_equal(a, b)
  loop.close()


def test_T3_finite_training_data(tmp_path):
  data = [next(ArrayBatches()) for _ in range(2)]
  loop = make_loop(data=iter(data), prefetch=0)
  with pytest.raises(ValueError) as info:
    loop.run(5)
  expect("T3", info.value)


def test_T4_optimizer_that_is_not_optax():
  with pytest.raises(TypeError) as info:
    TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), optax.adam)
  expect("T4", info.value)


def test_T5_targets_that_do_not_fit_the_loss():
  class ColumnTargets(ArrayBatches):
    def __next__(self):
      x, y = super().__next__()
      return x, y[:, None]

  loop = make_loop(data=ColumnTargets())
  with pytest.raises(tl.LayerError) as info:
    loop.run(1)
  text = expect("T5", info.value)
  assert "created at" in text
  loop.close()


def test_T6_out_of_range_ids_with_fill_give_a_nan_loss_named_by_step():
  class Ids:
    def __iter__(self):
      return self

    def __next__(self):
      ids = np.arange(40, dtype=np.int32).reshape(8, 5) % 12  # ids 10, 11 are out of range
      return ids, np.zeros(8, np.int32)

  model = tl.Serial(tl.Embedding(10, 4, out_of_range="fill"), tl.Mean(axis=1), tl.Dense(3),
                    tl.LogSoftmax())
  loop = make_loop(data=Ids(), model=model, check_ids=False)  # (else R28c names the id first)
  with pytest.raises(NonFiniteLossError) as info:
    loop.run(2)
  expect("T6", info.value)
  loop.close()


# ---- Work directory ---------------------------------------------------------------------------


def test_K1_output_dir_that_is_not_writable(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(WorkdirError) as info:
    make_loop(blocker / "run")
  expect("K1", info.value)
  assert isinstance(info.value, OSError) and blocker.read_text() == "not a directory"


HOLDER = """
import sys, time
from declax.training.workdir import lock_workdir
lock = lock_workdir(sys.argv[1])
print('locked', flush=True)
sys.stdin.read()
"""


def test_K2_K3_a_live_run_locks_the_dir_and_a_dead_one_leaves_a_stale_lock(tmp_path, caplog):
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=worker_env(1), cwd=ROOT)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(WorkdirLockedError) as info:
      make_loop(tmp_path)
    expect("K2", info.value)
    assert f"pid {holder.pid}" in str(info.value)
    assert not os.path.exists(tmp_path / "checkpoints")  # nothing of the locked dir touched
  finally:
    holder.kill()  # dies holding the lock: the lock file stays, stale
    holder.wait(timeout=30)
  assert os.path.exists(tmp_path / LOCK_NAME)
  with caplog.at_level(logging.INFO, logger="declax.training.workdir"):
    loop = make_loop(tmp_path)
  expect("K3", caplog.text)
  assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()
  loop.run(2)
  loop.close()


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A workdir with checkpoints at steps 4 and 8, and the parameters of step 8."""
  workdir = tmp_path_factory.mktemp("saved")
  loop = make_loop(workdir, every=4)
  loop.run(8)
  params = leaves(loop.params)
  loop.close()
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]
  return workdir, params


def copy_run(saved_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(saved_run[0], workdir)
  return workdir


@pytest.mark.slow
def test_K4_foreign_files_in_the_workdir_are_left_alone(saved_run, tmp_path):
  workdir = copy_run(saved_run, tmp_path)
  foreign = [workdir / "notes.txt", workdir / "checkpoints" / "README",
             workdir / "checkpoints" / "8.bak" / "copy", workdir / "checkpoints" / "backup" / "x"]
  for path in foreign:
    path.parent.mkdir(exist_ok=True)
    path.write_text("mine")
  loop = make_loop(workdir, every=4)
  assert loop.step == 8
  for a, b in zip(leaves(loop.params), saved_run[1], strict=True):
    np.testing.assert_array_equal(a, b)
  loop.run(4)
  loop.close()
  assert all(p.read_text() == "mine" for p in foreign), CATALOGUE["K4"]


def test_K5_stale_temporary_of_an_interrupted_save_is_removed(saved_run, tmp_path):
  workdir = copy_run(saved_run, tmp_path)
  stale = workdir / "checkpoints" / "99.orbax-checkpoint-tmp"
  stale.mkdir()
  (stale / "junk").write_text("half written")
  loop = make_loop(workdir, every=4)
  assert loop.step == 8
  loop.close()
  assert not stale.exists(), CATALOGUE["K5"]


def test_K6_checkpoint_of_another_model(saved_run, tmp_path):
  workdir = copy_run(saved_run, tmp_path)
  with pytest.raises(CheckpointMismatchError) as info:
    make_loop(workdir, model=tl.Serial(tl.Flatten(), tl.Dense(16), tl.Relu(), tl.Dense(3),
                                       tl.LogSoftmax()))
  text = expect("K6", info.value)
  assert "params/layers_1/kernel: float32[16, 8] vs float32[16, 16]" in text
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]


def _corrupted(workdir, entry: str) -> CheckpointCorruptedError:
  with pytest.raises(CheckpointCorruptedError) as info:
    make_loop(workdir, every=4)
  text = expect(entry, info.value)
  assert info.value.step == 8 and os.path.isdir(info.value.directory)  # nothing deleted
  return text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Orbax's loop
def test_K7_damaged_latest_checkpoint_names_the_older_one(saved_run, tmp_path):
  workdir = copy_run(saved_run, tmp_path)
  for path in glob.glob(str(workdir / "checkpoints" / "8" / "state" / "**" / "d" / "*"),
                        recursive=True):
    with open(path, "wb") as f:
      f.write(b"garbage")
  text = _corrupted(workdir, "K7")
  step8 = workdir / "checkpoints" / "8"
  assert f"To resume from step 4, the newest other checkpoint, move it aside: mv {step8}" in text
  os.rename(step8, str(step8) + ".corrupt")  # what the message says to do
  loop = make_loop(workdir, every=4)
  assert loop.step == 4
  loop.close()


def test_K8_directory_with_a_step_name_but_no_checkpoint(saved_run, tmp_path):
  workdir = copy_run(saved_run, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "8")
  (workdir / "checkpoints" / "8").mkdir()
  _corrupted(workdir, "K8")


def test_K9_damaged_data_position(saved_run, tmp_path):
  workdir = copy_run(saved_run, tmp_path)
  (workdir / "checkpoints" / "8" / "data" / "metadata").write_text("{not json")
  _corrupted(workdir, "K9")


# ---- Data position on resume ------------------------------------------------------------------


def test_D4_resuming_with_other_data_settings(tmp_path, digits_dir):
  from declax.data import make_pipeline

  def loop(batch_size):
    return make_loop(tmp_path, data=make_pipeline("declax_digits", "train", batch_size,
                                                  data_dir=digits_dir),
                     model=tl.Serial(tl.Flatten(), tl.Dense(10), tl.LogSoftmax()))

  first = loop(8)
  first.run(2)
  first.close()
  with pytest.raises(ValueError) as info:
    loop(16)
  text = expect("D4", info.value)
  assert "batch_size" in text and "(8, 16)" in text
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
