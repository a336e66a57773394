"""Shared helpers of the declax benchmarks: platform flags, interleaved timing, compile time,
memory, FLOPs and the matmul peak.

Every benchmark measures its candidates in ONE process, interleaved (A, B, A, B, ...) so that
load from other jobs on the machine hits all of them alike, and reports medians with the spread
(interquartile range relative to the median) so the noise is visible next to the result.

```python
steps = {'flax': flax_step, 'declax': declax_step}      # each: () -> runs one step, blocks
times = interleaved(steps, n_steps=20, warmup=2)        # {'flax': [s, s, ...], ...}
print(fmt_seconds(median(times['declax'])), spread(times['declax']))
```
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# ------------------------------------------------------------------------------------------------
# Platform (must run before JAX initialises its backends)
# ------------------------------------------------------------------------------------------------


def add_platform_flags(parser: argparse.ArgumentParser) -> None:
  """`--platform {cpu,gpu,tpu}`, `--dtype {float32,bfloat16}` and `--quick`."""
  parser.add_argument("--platform", default=None, choices=("cpu", "gpu", "tpu"),
                      help="JAX platform (default: JAX's choice)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="compute dtype of the models (parameters stay float32)")
  parser.add_argument("--quick", action="store_true",
                      help="tiny sizes and few steps: a smoke run of the code path")


def select_platform(name: str | None) -> None:
  """Sets `JAX_PLATFORMS` (before JAX creates its backends)."""
  if name:
    os.environ["JAX_PLATFORMS"] = {"gpu": "cuda"}.get(name, name)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
  return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> float:
  """Interquartile range / median: the relative noise of a series of timings."""
  if len(xs) < 4:
    return float("nan")
  q = statistics.quantiles(xs, n=4)
  return float((q[2] - q[0]) / statistics.median(xs))


def ratio_of_medians(a: Sequence[float], b: Sequence[float]) -> float:
  return median(a) / median(b)


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
  """Median and IQR/median of the per-round ratios a[i]/b[i] of interleaved timings.

  Pairing neighbouring measurements cancels slow drifts in machine load that a ratio of medians
  would still see.
  """
  ratios = [x / y for x, y in zip(a, b, strict=True)]
  return median(ratios), spread(ratios)


def fmt_seconds(s: float) -> str:
  if s >= 1.0:
    return f"{s:.3f} s"
  if s >= 1e-3:
    return f"{s * 1e3:.2f} ms"
  return f"{s * 1e6:.1f} us"


def fmt_bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if abs(n) < 1024 or unit == "GiB":
      return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
    n /= 1024
  return f"{n:.1f} GiB"


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------


def block(tree: Any) -> Any:
  import jax

  return jax.block_until_ready(tree)


def interleaved(candidates: Mapping[str, Callable[[], Any]], n_steps: int, warmup: int = 2,
                rounds_order: str = "alternate",
                cpu_times: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
  """Times `n_steps` calls of every candidate, interleaved; returns wall seconds per call.

  Each candidate is a zero-argument callable that runs one step and blocks until its results
  are ready. The order within a round alternates (A B, B A, ...) so neither candidate always
  runs right after the other. `warmup` untimed rounds come first. If `cpu_times` is a dict, it
  receives the process CPU seconds (all threads) of every call: less sensitive than wall time to
  other jobs taking the cores, though it counts spin-waiting threads too.
  """
  names = list(candidates)
  for _ in range(warmup):
    for name in names:
      candidates[name]()
  times: dict[str, list[float]] = {n: [] for n in names}
  if cpu_times is not None:
    cpu_times.update({n: [] for n in names})
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    for i in range(n_steps):
      order = names if (rounds_order != "alternate" or i % 2 == 0) else names[::-1]
      for name in order:
        cpu_start = time.process_time()
        start = time.perf_counter()
        candidates[name]()
        times[name].append(time.perf_counter() - start)
        if cpu_times is not None:
          cpu_times[name].append(time.process_time() - cpu_start)
  finally:
    if gc_was_enabled:
      gc.enable()
  return times


class Stepper:
  """Runs a jitted `step(state, batch) -> (state, metrics)` `repeat` times, then blocks.

  `stepper()` advances the state `repeat` steps (dispatched back to back, as a training loop
  does) and waits for the last; donated states stay valid because each new state replaces the
  old one. Divide the time of a call by `repeat` for the time per step.
  """

  def __init__(self, step: Callable, state: Any, batch: Any, repeat: int = 1):
    self.step, self.state, self.batch, self.repeat = step, state, batch, repeat

  def __call__(self) -> Any:
    metrics = None
    for _ in range(self.repeat):
      self.state, metrics = self.step(self.state, self.batch)
    block((self.state, metrics))
    return metrics


def per_step(times: Sequence[float], repeat: int) -> list[float]:
  return [t / repeat for t in times]


def time_compile(make_jitted: Callable[[], Any], args: Sequence[Any]) -> tuple[float, Any]:
  """Seconds to trace, lower and compile a freshly made jitted function; and the executable.

  JAX's tracing and compilation caches are cleared first, so every call compiles from scratch.
  """
  import jax

  jax.clear_caches()
  start = time.perf_counter()
  compiled = make_jitted().lower(*args).compile()
  return time.perf_counter() - start, compiled


# ------------------------------------------------------------------------------------------------
# Compiled-program facts: memory and FLOPs
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Memory:
  """From `compiled.memory_analysis()`: bytes of arguments, outputs, aliased (donated) buffers
  and temporaries. `peak` counts what must be live at once: arguments + outputs - aliased +
  temporaries."""

  arguments: int
  outputs: int
  aliased: int
  temporaries: int

  @property
  def peak(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries


def memory(compiled: Any) -> Memory | None:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return Memory(int(analysis.argument_size_in_bytes), int(analysis.output_size_in_bytes),
                int(analysis.alias_size_in_bytes), int(analysis.temp_size_in_bytes))


def xla_flops(compiled: Any) -> float | None:
  """XLA's own count of floating-point operations of a compiled program (None if unknown)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


# ------------------------------------------------------------------------------------------------
# Matmul peak and device peaks
# ------------------------------------------------------------------------------------------------

# Dense (no sparsity) peak throughput in TFLOP/s, by a substring of `device.device_kind`.
DEVICE_PEAK_TFLOPS = {
    # kind substring: {dtype: TFLOP/s}
    "H200": {"bfloat16": 989.0, "float32": 67.0},
    "H100 SXM": {"bfloat16": 989.0, "float32": 67.0},
    "H100 PCIe": {"bfloat16": 756.0, "float32": 51.0},
    "H100 NVL": {"bfloat16": 835.0, "float32": 60.0},
    "H100": {"bfloat16": 989.0, "float32": 67.0},
    "A100": {"bfloat16": 312.0, "float32": 19.5},
    "L4": {"bfloat16": 121.0, "float32": 30.3},
    "A10G": {"bfloat16": 70.0, "float32": 31.2},
    "V100": {"bfloat16": 125.0, "float32": 15.7},  # fp16 tensor cores (no bf16)
    "TPU v4": {"bfloat16": 275.0},
    "TPU v5 lite": {"bfloat16": 197.0},
    "TPU v5e": {"bfloat16": 197.0},
    "TPU v5p": {"bfloat16": 459.0},
    "TPU v6": {"bfloat16": 918.0},
}


def device_peak_flops(device: Any, dtype: str) -> float | None:
  """The published dense peak of `device` in FLOP/s for `dtype`, or None when not in the table."""
  kind = getattr(device, "device_kind", "")
  for key, peaks in DEVICE_PEAK_TFLOPS.items():
    if key.lower() in kind.lower() and dtype in peaks:
      return peaks[dtype] * 1e12
  return None


def matmul_peak(n: int = 2048, dtype: str = "float32", n_steps: int = 10) -> tuple[float, float]:
  """Measured FLOP/s of a jitted `(n, n) @ (n, n)` matmul (median over `n_steps`) and its
  spread. Chains 4 matmuls per call so that dispatch cost does not count."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32).astype(dtype) / n**0.5

  @jax.jit
  def chain(x):
    for _ in range(4):
      x = jnp.dot(x, b, preferred_element_type=jnp.float32).astype(dtype)
    return x

  block(chain(a))
  times = interleaved({"matmul": lambda: block(chain(a))}, n_steps=n_steps, warmup=1)["matmul"]
  flops = 4 * 2.0 * n**3
  return flops / median(times), spread(times)


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------


def machine_description() -> str:
  import jax

  device = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  kind = getattr(device, "device_kind", device.platform)
  return (f"{device.platform} ({kind}), {os.cpu_count()} host cores ({cpu}), "
          f"jax {jax.__version__}, "
          f"python {sys.version.split()[0]}")


def load_average() -> str:
  try:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def header(title: str, script: str | None = None, argv: Sequence[str] | None = None) -> str:
  """Title, the exact command line, the machine and the date: the head of every table.

  `script` is the benchmark's file and `argv` its arguments (default: this process's).
  """
  script = os.path.relpath(os.path.abspath(script or sys.argv[0]), repo_root())
  argv = list(sys.argv[1:] if argv is None else argv)
  command = "python " + " ".join([script] + argv)
  date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
  try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(),
                            capture_output=True, text=True, timeout=5).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    commit = "?"
  return "\n".join([
      f"### {title}",
      "",
      f"- command: `{command}`",
      f"- machine: {machine_description()}",
      f"- date: {date}; git {commit or '?'}; load average at start: {load_average()}",
      "",
  ])


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  cells = [[str(c) for c in columns]] + [[str(c) for c in row] for row in rows]
  lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in columns) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
  return "\n".join(lines)


def param_count(tree: Any) -> int:
  import jax
  import numpy as np

  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))


def bare_loop_steps(loop: Any, batch: Any, k: int) -> Any:
  """A callable running `k` of the Loop's own jitted train steps on `batch`, nothing else
  (no feeding, logging or checks): the step as the Loop compiled it."""
  from declax import sharding

  step, buffer = loop._train_steps[0], loop._metrics[0]

  def run():
    with sharding.mesh_context(loop.mesh, loop.rules):
      state = loop.state
      for _ in range(k):
        state, buffer.running = step(state, buffer.running, batch)
      block((state, buffer.running))
      loop.state = state

  return run
