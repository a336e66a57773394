"""Preemption: SIGTERM makes a run save the step it is on, exit with status 0, and resume to
the exact result of a run that was never stopped; with two processes, SIGTERM to one of them
makes both save the same step."""

from __future__ import annotations

import re
import signal

import pytest

from tests.multihost_utils import Workers
from tests.reliability.torture_utils import (
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


def done_step(stdout: str) -> tuple[int, bool]:
  found = re.search(r"^done (\d+) preempted=(True|False)$", stdout, re.M)
  assert found, stdout[-2000:]
  return int(found.group(1)), found.group(2) == "True"


def assert_same_run(workdir: str, straight: str, process: int = 0) -> None:
  losses, expected = read_losses(workdir, process), read_losses(straight, process)
  assert sorted(losses) == sorted(expected)
  for step, values in expected.items():
    assert losses[step] == values, (step, losses[step], values)
  assert_bitwise_equal(read_params(workdir, process), read_params(straight, process))


@pytest.mark.slow
def test_sigterm_saves_the_current_step_exits_0_and_resumes_exactly(tmp_path, digits_dir,
                                                                    straight_run):
  # SIGTERM arrives while step 10 runs: step 10 is saved, nothing after it.
  workdir = str(tmp_path / "run")
  result = run_worker(workdir, digits_dir, "--sigterm-at", "10")
  assert result.returncode == 0, result.stderr[-3000:]
  assert done_step(result.stdout) == (10, True)
  assert checkpoint_entries(workdir)[0][-1] == 10

  # SIGTERM from outside at a moment the worker does not choose.
  args = worker_args(workdir, digits_dir, "--step-delay", "0.05")
  with Workers(WORKER, 1, args) as workers:
    workers.wait_for_output("step 13\n", timeout=120)
    workers.send_signal(0, signal.SIGTERM)
    (result,) = workers.wait(timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert resumed_step(result) == 10
  saved, preempted = done_step(result.stdout)
  # Step 13's loss was reported, so step 14 was under way: the save is at most a step later
  # (15 if the signal landed between steps), long before the run's end.
  assert preempted and 14 <= saved <= 15 < STEPS, saved
  assert checkpoint_entries(workdir)[0][-1] == saved

  result = run_worker(workdir, digits_dir)
  assert result.returncode == 0 and resumed_step(result) == saved
  assert done_step(result.stdout) == (STEPS, False)
  assert_same_run(workdir, straight_run)


@pytest.mark.slow
def test_two_processes_sigterm_to_one_both_save_the_same_step(tmp_path, digits_dir):
  def two(workdir, *extra, timeout=180):
    return Workers(WORKER, 2, worker_args(workdir, digits_dir, "--distributed", *extra,
                                          steps=16))

  straight = str(tmp_path / "straight")
  with two(straight) as workers:
    results = workers.wait(timeout=180)
  assert all(r.returncode == 0 for r in results), results[0].stderr[-3000:]

  workdir = str(tmp_path / "run")
  with two(workdir, "--step-delay", "0.1") as workers:
    workers.wait_for_output("step 4\n", process=0, timeout=120)
    workers.send_signal(1, signal.SIGTERM)
    results = workers.wait(timeout=120)
  for r in results:
    assert r.returncode == 0, r.stderr[-3000:]
  saved = {done_step(r.stdout) for r in results}
  assert len(saved) == 1, saved  # the same step on both processes
  ((step, preempted),) = saved
  assert preempted and 4 <= step < 16
  assert checkpoint_entries(workdir)[0][-1] == step

  with two(workdir) as workers:
    results = workers.wait(timeout=180)
  for r in results:
    assert r.returncode == 0 and resumed_step(r) == step, r.stderr[-3000:]
  for process in (0, 1):
    assert_same_run(workdir, straight, process)
