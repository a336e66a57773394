"""A dead or hung peer in a 2-process run (catalogue entries M1-M3): every surviving process
exits with a non-zero status and a message naming the cause, within a bounded time (the test
workers use a 10 s heartbeat timeout; see tests/multihost_utils.py).

- M1: a worker (not the coordinator) is SIGKILLed: the survivor's next collective fails and
  declax raises `PeerFailureError`; JAX then aborts the process at exit (SIGABRT).
- M2: the coordinator (process 0) is SIGKILLed: JAX's coordination client aborts the survivor
  at once with its own message (it runs in a C++ thread: no Python code can add to it).
- M3: a worker hangs (SIGSTOP): the coordination service misses its heartbeats and aborts the
  survivor after the heartbeat timeout.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.multihost_utils import HEARTBEAT_TIMEOUT_S, Workers
from tests.reliability.catalogue import CATALOGUE
from tests.reliability.torture_utils import WORKER, worker_args

BOUND_S = 60  # "bounded, not hung": generous for 2 slow cores


def _survivor(tmp_path, digits_dir, victim: int, sig: int) -> tuple[int, str, float]:
  survivor = 1 - victim
  args = worker_args(str(tmp_path), digits_dir, "--distributed", "--step-delay", "0.05",
                     steps=100_000)
  with Workers(WORKER, 2, args) as workers:
    workers.wait_for_output("step 3\n", process=survivor, timeout=120)
    start = time.monotonic()
    workers.send_signal(victim, sig)
    result = workers.wait_for(survivor, timeout=BOUND_S)
    elapsed = time.monotonic() - start
  return result.returncode, result.stderr, elapsed


@pytest.mark.slow
def test_M1_dead_worker_the_survivor_says_so_and_exits_non_zero(tmp_path, digits_dir):
  returncode, stderr, elapsed = _survivor(tmp_path, digits_dir, victim=1, sig=signal.SIGKILL)
  assert returncode != 0 and elapsed < BOUND_S
  assert "PeerFailureError" in stderr and CATALOGUE["M1"] in stderr, stderr[-4000:]


@pytest.mark.slow
def test_M2_dead_coordinator_the_survivor_exits_non_zero(tmp_path, digits_dir):
  returncode, stderr, elapsed = _survivor(tmp_path, digits_dir, victim=0, sig=signal.SIGKILL)
  assert returncode != 0 and elapsed < BOUND_S
  assert CATALOGUE["M2"] in stderr, stderr[-4000:]


@pytest.mark.slow
def test_M3_hung_worker_the_survivor_exits_after_the_heartbeat_timeout(tmp_path, digits_dir):
  returncode, stderr, elapsed = _survivor(tmp_path, digits_dir, victim=1, sig=signal.SIGSTOP)
  assert returncode != 0 and elapsed < BOUND_S + HEARTBEAT_TIMEOUT_S
  assert CATALOGUE["M2"] in stderr and CATALOGUE["M3"] in stderr, stderr[-4000:]
