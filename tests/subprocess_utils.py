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


def device_env(n_devices: int) -> dict:
  env = dict(os.environ)
  # (more fake devices than cores: XLA's collectives abort after their default timeout)
  env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={n_devices} "
                      "--xla_cpu_collective_call_terminate_timeout_seconds=600")
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
    raise AssertionError(f"snippet failed (rc={result.returncode}):\n{result.stderr[-4000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]
