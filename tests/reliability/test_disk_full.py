"""A full disk during an async checkpoint save (catalogue entry K10): the run stops with
`CheckpointSaveError` naming the step, the cause and the last good checkpoint, which stays
intact and restores exactly.

Two ways to fill the disk: a real 1 MiB tmpfs mounted for the test (needs root and
CAP_SYS_ADMIN; skipped otherwise), and Orbax's JSON writer patched to fail with ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import declax.layers as tl
from declax.training import Loop, TrainTask, make_optimizer
from declax.training.checkpoints import CheckpointSaveError
from declax.training.metric_writers import MultiWriter
from tests.reliability.catalogue import CATALOGUE
from tests.training.training_utils import ArrayBatches, tiny_classifier


def make_loop(workdir) -> Loop:
  task = TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), make_optimizer("adam", 1e-2),
                   n_steps_per_checkpoint=4)
  return Loop(tiny_classifier(), task, output_dir=workdir, writers=MultiWriter([]),
              keep_checkpoints=1, print_summary=False)


def committed(workdir) -> list[str]:
  return sorted(n for n in os.listdir(workdir / "checkpoints") if n.isdigit())


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@contextlib.contextmanager
def tiny_tmpfs(path):
  os.makedirs(path)
  try:
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                             capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    mounted = False
  if not mounted:
    pytest.skip("cannot mount a tmpfs here (needs root); the patched-writer test covers it")
  try:
    yield path
  finally:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(directory) -> None:
  fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT)
  try:
    while True:
      os.write(fd, b"\0" * 4096)
  except OSError as error:
    assert error.errno == errno.ENOSPC
  finally:
    os.close(fd)


@contextlib.contextmanager
def failing_writes(monkeypatch, step: int):
  """Every file write of step `step` (arrays and JSON) fails with ENOSPC, as on a full disk."""
  from orbax.checkpoint._src.serialization import serialization

  marker = f"{step}.orbax-checkpoint-tmp"
  full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  save_json = ocp.JsonCheckpointHandler._save_fn
  write_arrays = serialization.async_serialize_from_host

  async def json_fn(self, x, directory):
    if marker in str(directory):
      raise full
    return await save_json(self, x, directory)

  async def arrays_fn(rslices, tensorstore_spec, **kwargs):
    if marker in str(tensorstore_spec):
      raise full
    return await write_arrays(rslices, tensorstore_spec, **kwargs)

  monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", json_fn)
  monkeypatch.setattr(serialization, "async_serialize_from_host", arrays_fn)
  yield


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Orbax's loop
@pytest.mark.parametrize("how", ["tmpfs", "patched_writer"])
def test_K10_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, how):
  with contextlib.ExitStack() as stack:
    disk = stack.enter_context(tiny_tmpfs(tmp_path / "disk")) if how == "tmpfs" else tmp_path
    workdir = disk / "run"
    loop = make_loop(workdir)
    loop.run(4)  # checkpoint 4, written and committed
    params4 = leaves(loop.params)
    if how == "tmpfs":
      fill(disk)
    else:
      stack.enter_context(failing_writes(monkeypatch, 8))
    with pytest.raises(CheckpointSaveError) as info:
      loop.run(4)  # saves step 8 at the end: the disk is full
    error = info.value
    text = str(error)
    assert CATALOGUE["K10"] in text, text
    assert f"could not save step 8 in {workdir / 'checkpoints'}" in text
    assert "the newest complete checkpoint, step 4, is intact" in text
    assert error.step == 8 and error.last_good_step == 4
    loop.close()  # the failure is not raised a second time
    monkeypatch.undo()
    if how == "tmpfs":
      os.remove(disk / "filler")
    # Nothing lost: step 4 is still the newest checkpoint, and restores exactly.
    assert "4" in os.listdir(workdir / "checkpoints")
    resumed = make_loop(workdir)
    assert resumed.step == 4
    for a, b in zip(leaves(resumed.params), params4, strict=True):
      np.testing.assert_array_equal(a, b)
    # The incomplete step 8 is never a checkpoint. (Its temporary is removed when the
    # checkpoints are opened, but Orbax may still finish writes of the failed save in the
    # background of this process and leave a new `8.orbax-checkpoint-tmp`, as docs/errors.md
    # says: only committed steps are compared, so the test does not depend on the load.)
    assert committed(workdir) == ["4"]
    resumed.run(4)
    resumed.close()
    assert committed(workdir) == ["8"]
    assert make_loop(workdir).step == 8


def test_K10_a_clean_up_error_on_a_full_disk_still_names_the_full_disk(tmp_path, monkeypatch):
  # Orbax's clean-up of the failed step can raise its own error (late writes into the tmp dir),
  # hiding the ENOSPC: the free space of the file system says what happened.
  import shutil

  cause = OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), "8.orbax-checkpoint-tmp")
  monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1 << 20, 1 << 20, 0))
  text = str(CheckpointSaveError(8, str(tmp_path), cause, 4))
  assert CATALOGUE["K10"] in text and "Directory not empty" in text, text
  monkeypatch.undo()
  assert CATALOGUE["K10"] not in str(CheckpointSaveError(8, str(tmp_path), cause, 4))
