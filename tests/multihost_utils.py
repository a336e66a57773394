"""Run N worker processes on 127.0.0.1, as a multi-host JAX job, with bounded waits.

Every test that needs several processes goes through here, so each one gets a fresh coordinator
port, small `jax.distributed` timeouts, outputs in files (no pipe can fill up and block a
worker) and, whatever happens, every worker killed by its PID when the test is done.

```python
WORKER = '''
from tests.multihost_utils import init_worker
init_worker()                      # jax.distributed.initialize for this worker, or nothing if 1
import jax
print(jax.process_index(), jax.device_count())
'''
results = run_workers(WORKER, n_processes=2, n_devices=2, timeout=60)
for returncode, stdout, stderr in results: ...
```

For tests that act on workers while they run (a signal to one of them, a kill):

```python
with Workers(WORKER, n_processes=2, args=[str(tmp_path)]) as workers:
  workers.wait_for_output('training started', process=1, timeout=60)
  workers.send_signal(1, signal.SIGTERM)
  results = workers.wait(timeout=60)
```

A worker is `python -c SCRIPT ARGS...` (or `python SCRIPT ARGS...` when `script` is a path to a
`.py` file), run in the repository root with the root on `PYTHONPATH`, `JAX_PLATFORMS=cpu` and
`n_devices` fake CPU devices. It learns its place from the environment (`init_worker` reads it):
`DECLAX_TEST_PROCESS_ID`, `DECLAX_TEST_NUM_PROCESSES`, `DECLAX_TEST_COORDINATOR`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from tests.subprocess_utils import explain_abort, fake_device_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small enough that a missing or dead peer ends a test in seconds, large enough for 2 slow cores.
INITIALIZATION_TIMEOUT_S = 30
HEARTBEAT_TIMEOUT_S = 10
SHUTDOWN_TIMEOUT_S = 10


class WorkerResult(NamedTuple):
  """What one worker left: `returncode, stdout, stderr = result` (negative: killed by signal)."""

  returncode: int
  stdout: str
  stderr: str


class WorkersTimedOut(AssertionError):
  """Workers still ran at the deadline; all were killed. `results` holds their outputs."""

  def __init__(self, timeout: float, results: list[WorkerResult], running: list[int]):
    self.results = results
    tails = "\n".join(f"--- process {i} (rc={r.returncode}) stderr tail:\n{r.stderr[-2000:]}"
                      for i, r in enumerate(results))
    super().__init__(f"worker(s) {running} still running after {timeout:.0f} s; all were "
                     f"killed\n{tails}")


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on right now."""
  import socket

  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def worker_env(n_devices: int = 1, extra: Mapping[str, str] | None = None) -> dict[str, str]:
  """The environment of a worker: fake CPU devices, the repo on the path, quiet TF/absl logs."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(
      [f for f in env.get("XLA_FLAGS", "").split()
       if not f.startswith(("--xla_force_host_platform_device_count",
                            "--xla_cpu_collective_call_terminate_timeout_seconds"))]
      + [fake_device_flags(n_devices)])  # (the timeout raised: loaded machines)
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  env["PYTHONUNBUFFERED"] = "1"
  env.update(extra or {})
  return env


def init_worker(initialization_timeout: int = INITIALIZATION_TIMEOUT_S,
                heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_S,
                shutdown_timeout_seconds: int = SHUTDOWN_TIMEOUT_S) -> tuple[int, int]:
  """In a worker: `jax.distributed.initialize` on the test's coordinator (no-op for 1 process).

  Call it before anything else touches JAX. Returns `(process_id, num_processes)`.
  """
  process_id = int(os.environ.get("DECLAX_TEST_PROCESS_ID", "0"))
  num_processes = int(os.environ.get("DECLAX_TEST_NUM_PROCESSES", "1"))
  if num_processes > 1:
    import jax

    jax.distributed.initialize(
        coordinator_address=os.environ["DECLAX_TEST_COORDINATOR"],
        num_processes=num_processes, process_id=process_id,
        initialization_timeout=initialization_timeout,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        shutdown_timeout_seconds=shutdown_timeout_seconds)
  return process_id, num_processes


class Workers:
  """`n_processes` workers running `script`; a context manager that kills them all on exit.

  **Arguments**
  - `script`: Python source (dedented) or the path of a `.py` file.
  - `n_processes`: how many workers; each gets its id in `DECLAX_TEST_PROCESS_ID`.
  - `args`: command-line arguments for every worker (`sys.argv[1:]`).
  - `n_devices`: fake CPU devices per worker.
  - `env`: extra environment variables (one dict for all, or a list with one per worker).
  """

  def __init__(self, script: str, n_processes: int = 1, args: Sequence[str] = (),
               n_devices: int = 1,
               env: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None):
    self.port = free_port()
    self._dir = tempfile.TemporaryDirectory(prefix="declax-workers-")
    is_file = script.endswith(".py") and "\n" not in script and os.path.isfile(script)
    command = [sys.executable, "-u"] + ([script] if is_file else ["-c", textwrap.dedent(script)])
    envs = env if isinstance(env, Sequence) else [env or {}] * n_processes
    self.procs: list[subprocess.Popen] = []
    self._n_devices = n_devices
    self._out: list[tuple[str, str]] = []
    try:
      for i in range(n_processes):
        extra = {"DECLAX_TEST_PROCESS_ID": str(i),
                 "DECLAX_TEST_NUM_PROCESSES": str(n_processes),
                 "DECLAX_TEST_COORDINATOR": f"127.0.0.1:{self.port}", **envs[i]}
        out = os.path.join(self._dir.name, f"{i}.out")
        err = os.path.join(self._dir.name, f"{i}.err")
        with open(out, "w") as stdout, open(err, "w") as stderr:
          self.procs.append(subprocess.Popen(
              command + [str(a) for a in args], stdout=stdout, stderr=stderr,
              stdin=subprocess.DEVNULL, env=worker_env(n_devices, extra), cwd=ROOT))
        self._out.append((out, err))
    except BaseException:
      self.kill_all()
      raise

  # -- watching ------------------------------------------------------------------------------

  @property
  def pids(self) -> list[int]:
    return [p.pid for p in self.procs]

  def output(self, process: int) -> WorkerResult:
    """What worker `process` wrote so far (returncode None-safe: -1 while it runs)."""
    out, err = self._out[process]
    code = self.procs[process].poll()
    return WorkerResult(-1 if code is None else code, _read(out),
                        explain_abort(_read(err), self._n_devices))

  def wait_for_output(self, text: str, process: int = 0, timeout: float = 60) -> None:
    """Blocks until worker `process` has printed `text` to stdout; fails if it exits first or
    the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
      if text in _read(self._out[process][0]):
        return
      if self.procs[process].poll() is not None:
        result = self.output(process)
        raise AssertionError(f"worker {process} exited (rc={result.returncode}) before printing "
                             f"{text!r}:\n{result.stderr[-3000:]}")
      if time.monotonic() > deadline:
        raise AssertionError(f"worker {process} did not print {text!r} within {timeout} s:\n"
                             f"{self.output(process).stderr[-3000:]}")
      time.sleep(0.05)

  def send_signal(self, process: int, sig: int) -> None:
    """Sends `sig` to worker `process` (by its PID)."""
    if self.procs[process].poll() is None:
      os.kill(self.procs[process].pid, sig)

  def wait(self, timeout: float = 120) -> list[WorkerResult]:
    """Waits for every worker to exit; past `timeout` all are killed and `WorkersTimedOut` is
    raised (with their outputs)."""
    deadline = time.monotonic() + timeout
    for proc in self.procs:
      try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        running = [i for i, p in enumerate(self.procs) if p.poll() is None]
        self.kill_all()
        raise WorkersTimedOut(timeout, self.results(), running) from None
    return self.results()

  def wait_for(self, process: int, timeout: float = 120) -> WorkerResult:
    """Waits for worker `process` alone to exit (others may still run); past `timeout` all are
    killed and `WorkersTimedOut` is raised."""
    try:
      self.procs[process].wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.kill_all()
      raise WorkersTimedOut(timeout, self.results(), [process]) from None
    return self.output(process)

  def results(self) -> list[WorkerResult]:
    return [self.output(i) for i in range(len(self.procs))]

  # -- cleaning up ---------------------------------------------------------------------------

  def kill_all(self) -> None:
    """SIGKILLs every worker still running (each by its own PID) and reaps it."""
    for proc in self.procs:
      if proc.poll() is None:
        try:
          os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
    for proc in self.procs:
      try:
        proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        pass

  def __enter__(self) -> Workers:
    return self

  def __exit__(self, *exc) -> None:
    try:
      self.kill_all()
    finally:
      self._dir.cleanup()


def _read(path: str) -> str:
  try:
    with open(path, errors="replace") as f:
      return f.read()
  except FileNotFoundError:
    return ""


def run_workers(script: str, n_processes: int = 1, args: Sequence[str] = (),
                n_devices: int = 1, timeout: float = 120,
                env: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None
                ) -> list[WorkerResult]:
  """Runs `script` in `n_processes` workers until all exit; returns one
  `(returncode, stdout, stderr)` per worker, in process order.

  Workers still running after `timeout` seconds are killed and `WorkersTimedOut` is raised.
  """
  with Workers(script, n_processes, args, n_devices, env) as workers:
    return workers.wait(timeout)
