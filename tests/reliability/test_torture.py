"""Crash/resume torture: a run SIGKILLed again and again, at chosen and at random points, and
resumed each time, ends bitwise identical to a run that was never interrupted.

The kill points cover every phase of a step and of an async Orbax save: mid-step (with batches
read ahead by the prefetch thread), while a checkpoint's files are being written, when it is
written but not yet committed (renamed into place), after the commit but before old checkpoints
are deleted, right after a restore, during the final save, and at random moments. After every
kill the next run must resume from a committed checkpoint only (never the half-written one),
the checkpoint directory must stay within `max_to_keep` (+1 while a save is being finalised),
and in the end every step's loss, from whichever run computed it, and the final parameters
must equal the uninterrupted run's bit for bit.

Set DECLAX_TORTURE_SEED to replay the random kill times of a failed run.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.multihost_utils import Workers
from tests.reliability.catalogue import CATALOGUE
from tests.reliability.torture_utils import (
    KEEP,
    STEPS,
    WORKER,
    assert_bitwise_equal,
    checkpoint_entries,
    read_losses,
    read_params,
    resumed_step,
    run_worker,
    worker_args,
)

# The order of the kills: three at random moments first (each run gets at most ~7 steps
# further, so they end before step 16), then self-inflicted SIGKILLs at exact places (see
# train_worker.py) at steps the runs before them cannot have passed, then the final save.
N_RANDOM_KILLS = 3
PLANNED_KILLS = ["step:14", "save:16", "commit:20", "delete:24", "restore", f"commit:{STEPS}"]


def _random_kill(workdir: str, data_dir: str, rng: random.Random) -> tuple[int, str, int]:
  """Starts a run and SIGKILLs it from outside at a random moment after a random step."""
  # Slowed down to ~10 steps/s (sleeping does not change any number), so the kill lands
  # within two steps of the chosen one.
  args = worker_args(workdir, data_dir, "--step-delay", "0.1")
  with Workers(WORKER, 1, args) as workers:
    workers.wait_for_output("resumed ", timeout=120)
    start = resumed_step(workers.output(0))
    target = start + rng.randint(1, 5)
    workers.wait_for_output(f"step {target}\n", timeout=120)
    time.sleep(rng.uniform(0.0, 0.15))
    workers.send_signal(0, signal.SIGKILL)
    result = workers.wait(timeout=60)[0]
  return result.returncode, f"random after step {target}", start


@pytest.mark.slow
def test_sigkill_at_many_points_then_resume_is_bitwise_identical(tmp_path, digits_dir,
                                                                straight_run):
  seed = int(os.environ.get("DECLAX_TORTURE_SEED", time.time_ns() % 100_000))
  rng = random.Random(seed)
  context = f"(DECLAX_TORTURE_SEED={seed})"
  straight = straight_run
  expected_losses = read_losses(straight)
  assert sorted(expected_losses) == list(range(1, STEPS + 1))

  workdir = str(tmp_path / "tortured")
  committed_before: list[int] = []
  survived = []
  plan = ["random"] * N_RANDOM_KILLS + PLANNED_KILLS
  for kill in plan:
    if kill == "random":
      returncode, where, resumed = _random_kill(workdir, digits_dir, rng)
    else:
      result = run_worker(workdir, digits_dir, "--kill", kill)
      returncode, where, resumed = result.returncode, kill, resumed_step(result)
    assert returncode == -signal.SIGKILL, f"{where}: rc={returncode} {context}"
    # The run started from the newest *committed* checkpoint of the previous run, or step 0.
    if resumed is not None:  # catalogue K11
      assert resumed == (committed_before[-1] if committed_before else 0), (
          CATALOGUE["K11"], where, context)
    committed, others = checkpoint_entries(workdir)
    assert len(committed) <= KEEP + 1, (where, committed, context)
    assert all(name.endswith(".orbax-checkpoint-tmp") for name in others), (others, context)
    assert len(others) <= 1, (where, others, context)
    committed_before = committed
    survived.append(where)

  # The half-written final checkpoint is never loaded: the last run resumes before it.
  assert committed_before[-1] < STEPS
  result = run_worker(workdir, digits_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert resumed_step(result) == committed_before[-1], CATALOGUE["K11"]

  losses = read_losses(workdir)
  assert sorted(losses) == list(range(1, STEPS + 1)), context
  for step, values in expected_losses.items():
    # Every run that computed this step computed the same bits.
    assert losses[step] == values, (step, losses[step], values, context)
  assert_bitwise_equal(read_params(workdir), read_params(straight))
  committed, others = checkpoint_entries(workdir)
  assert len(committed) == KEEP and committed[-1] == STEPS and not others, (committed, others)
  assert len(survived) >= 5
  print(f"survived {len(survived)} SIGKILLs: {survived} {context}")
