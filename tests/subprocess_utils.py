"""Run Python snippets in fresh interpreters with fake CPU devices (XLA flags must be set before
JAX starts, so multi-device tests cannot share the test process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# XLA's CPU collectives abort a process from C++ ("Expected 8 threads to join the rendezvous, but
# only 2 of them arrived on time") when a device thread waits past this timeout; a loaded machine
# gets there with more fake devices than cores, and even with as many, so it is always raised.
COLLECTIVE_TIMEOUT_S = 600
RENDEZVOUS_ABORT = "threads to join the rendezvous"


def cores() -> int:
  """The CPU cores this process may run on."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fake_device_flags(n_devices: int) -> str:
  """XLA_FLAGS for `n_devices` fake CPU devices with XLA's collective timeout raised. With more
  devices than cores, declax's explanation of the rendezvous abort (catalogue R31, the sentence
  `declax-train` prints) goes to stderr first, where pytest shows it with a failing test."""
  from declax.cli import COLLECTIVE_TIMEOUT_FLAG
  from declax.cli import fake_device_flags as explained

  devices = f"--xla_force_host_platform_device_count={n_devices}"
  _, warning = explained(devices, cores())
  if warning:
    print(warning, file=sys.stderr)
  return f"{devices} {COLLECTIVE_TIMEOUT_FLAG}={COLLECTIVE_TIMEOUT_S}"


def explain_abort(stderr: str, n_devices: int) -> str:
  """`stderr` of a process run with fake devices, with declax's explanation added when XLA's
  rendezvous aborted it (the abort itself is one line from C++)."""
  if RENDEZVOUS_ABORT not in stderr:
    return stderr
  return (f"{stderr.rstrip()}\ndeclax: XLA's all-reduce rendezvous aborted this process: its "
          f"{n_devices} fake CPU devices on {cores()} cores did not all reach a collective "
          f"within {COLLECTIVE_TIMEOUT_S} s (a loaded machine). Use at most {cores()} devices "
          f"(--xla_force_host_platform_device_count={cores()}) or rerun on a quieter "
          "machine.\n")


def device_env(n_devices: int) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = fake_device_flags(n_devices)
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
  return env


def run_snippet(code: str, n_devices: int = 8, timeout: float = 300) -> dict:
  """Runs `code` with `n_devices` fake CPU devices; the snippet prints one JSON line last.

  Returns that JSON object; a failure raises with the snippet's stderr.
  """
  result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=device_env(n_devices), cwd=ROOT)
  if result.returncode != 0:
    stderr = explain_abort(result.stderr, n_devices)
    raise AssertionError(f"snippet failed (rc={result.returncode}):\n{stderr[-4000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]
