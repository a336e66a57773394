"""Model FLOPs utilisation (MFU) of declax's TransformerLM train step.

MFU = model FLOPs per step / step time / peak FLOP/s. Model FLOPs are counted two ways:

- analytic (PaLM's convention): `6 * N + 12 * n_layers * d_model * length` per token, where `N`
  counts the parameters that take part in matmuls (not the embedding lookup) and the second term
  is full (not causally halved) attention;
- XLA's `compiled.cost_analysis()['flops']` of the whole compiled step (includes the optimizer
  and element-wise work).

The peak is, on CPU, a jitted float32 2048x2048 matmul chain measured in the same run,
interleaved with the model steps (each round: one step of every model, one matmul), so both see
the same machine load; MFU is the median over rounds of the per-round ratio. On GPU/TPU the
published dense peak of the device for `--dtype` is used (see `common.DEVICE_PEAK_TFLOPS`), and
the measured matmul peak is reported next to it. The hand-written Flax baseline of
`benchmarks/overhead.py` is measured alongside.

`--profile` traces a few steps with `jax.profiler` and prints where the time goes: per HLO
operation kind (dots by shape, with their GFLOP/s; copies/transposes; element-wise fusions),
taking each operation's fastest of the traced steps.

    python benchmarks/mfu.py                                   # issue size on CPU, ~2 minutes
    python benchmarks/mfu.py --profile --steps 5               # plus the time breakdown
    python benchmarks/mfu.py --quick                           # smoke run
    python benchmarks/mfu.py --platform gpu --dtype bfloat16 --size 100m --attention cudnn
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from typing import Any

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, overhead  # noqa: E402

SIZES = {
    # The CPU model.
    "issue": overhead.LM_SIZES["full"],
    # ~98M parameters (85M in the blocks, 2 x 6.3M embedding/unembedding), GPT-2-small shaped.
    "100m": dict(vocab=8192, d_model=768, d_ff=3072, n_layers=12, n_heads=12, max_len=1024,
                 batch=32),
    "quick": overhead.LM_SIZES["quick"],
}


def analytic_flops(size: dict) -> float:
  """PaLM-style model FLOPs of one training step (forward + backward)."""
  d, f, n_layers, vocab = size["d_model"], size["d_ff"], size["n_layers"], size["vocab"]
  length, tokens = size["max_len"], size["batch"] * size["max_len"]
  matmul_params = n_layers * (4 * d * d + 2 * d * f) + d * vocab
  return tokens * (6.0 * matmul_params + 12.0 * n_layers * d * length)


# ------------------------------------------------------------------------------------------------
# Attention implementation override (for GPU runs)
# ------------------------------------------------------------------------------------------------


def with_attention_implementation(model: Any, implementation: str | None) -> Any:
  """The same layer tree with every attention layer's `implementation` field replaced."""
  if implementation is None:
    return model
  import dataclasses as dc

  import flax.linen as nn

  from declax.layers.attention import _MultiHeadAttention

  def convert(layer):
    updates = {}
    for field in dc.fields(layer):
      if field.name in ("parent", "name") or not field.init:
        continue
      value = getattr(layer, field.name)
      if isinstance(value, nn.Module):
        updates[field.name] = convert(value)
      elif isinstance(value, (tuple, list)) and any(isinstance(v, nn.Module) for v in value):
        updates[field.name] = type(value)(convert(v) if isinstance(v, nn.Module) else v
                                          for v in value)
    if isinstance(layer, _MultiHeadAttention):
      updates["implementation"] = implementation
    return layer.clone(**updates) if updates else layer

  return convert(model)


# ------------------------------------------------------------------------------------------------
# Profile
# ------------------------------------------------------------------------------------------------


def _dims(text: str) -> list[int]:
  return [int(x) for x in text.split(",")] if text else []


def hlo_dot_flops(hlo_text: str) -> dict[str, tuple[float, str]]:
  """`{instruction name: (dot FLOPs, 'MxN k K' description)}` for every fusion/dot of the
  entry computation that contains dots."""
  computations: dict[str, list[str]] = {}
  current = None
  for line in hlo_text.splitlines():
    header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
    if header and not line.startswith(" "):
      current = header.group(1)
      computations[current] = []
    elif current is not None:
      computations[current].append(line)
  shape_re = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \w+\[([\d,]*)\]")

  def dots_in(lines: list[str]) -> tuple[float, list[str], dict[str, tuple[float, str]]]:
    """Total dot FLOPs of a computation, their descriptions, and each dot by name."""
    shapes: dict[str, list[int]] = {}
    total, described, each = 0.0, [], {}
    for line in lines:
      match = shape_re.match(line)
      if not match:
        continue
      shapes[match.group(1)] = _dims(match.group(2))
      if " dot(" not in line:
        continue
      operands = re.search(r"dot\(%?([\w.\-]+), %?([\w.\-]+)\)", line)
      contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
      lhs = shapes.get(operands.group(1), []) if operands else []
      k = 1
      for d in _dims(contracting.group(1) if contracting else ""):
        k *= lhs[d] if d < len(lhs) else 1
      out = _dims(match.group(2))
      n = 1
      for d in out:
        n *= d
      description = f"{'x'.join(map(str, out))} k{k}"
      total += 2.0 * n * k
      described.append(description)
      each[match.group(1)] = (2.0 * n * k, description)
    return total, described, each

  result: dict[str, tuple[float, str]] = {}
  per_computation = {name: dots_in(lines) for name, lines in computations.items()}
  for name, lines in computations.items():
    result.update(per_computation[name][2])  # stand-alone dots, e.g. `dot.12`
    for line in lines:
      call = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?calls=%?([\w.\-]+)", line)
      if call and call.group(2) in per_computation:
        flops, described, _ = per_computation[call.group(2)]
        if flops:
          result[call.group(1)] = (flops, ", ".join(described))
  return result


def profile_breakdown(compiled: Any, stepper: common.Stepper, n_steps: int = 4,
                      peak: float | None = None) -> str:
  """Traces `n_steps` steps and returns a table of time per operation kind.

  A rate above 1.5x `peak` (FLOP/s) is shown as `async`: that operation's trace event ended
  before its work did (it ran on the thread pool), so its time is not measured.
  """
  import jax

  directory = tempfile.mkdtemp(prefix="declax_profile_")
  with jax.profiler.trace(directory, create_perfetto_trace=True):
    for _ in range(n_steps):
      stepper()
  files = glob.glob(os.path.join(directory, "**", "*perfetto_trace.json.gz"), recursive=True)
  if not files:
    return "(no trace written)"
  with gzip.open(files[0]) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  durations: dict[str, list[float]] = collections.defaultdict(list)
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith("$"):
      durations[e["name"]].append(e["dur"] * 1e-6)
  dots = hlo_dot_flops(compiled.as_text())
  kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
  skip = ("Thunk", "Slinky", "Await", "PjitFunction", "Execute", "end: ")
  for name, ds in durations.items():
    if any(s in name for s in skip):
      continue
    seconds = min(ds)  # fastest of the traced steps: the least disturbed by other load
    if name in dots:
      flops, described = dots[name]
      kind = f"dot {described}"
    else:
      flops, kind = 0.0, re.sub(r"\.\d+$", "", name)
    kinds[kind][0] += seconds
    kinds[kind][1] += flops
    kinds[kind][2] += 1
  total = sum(v[0] for v in kinds.values())
  rows = []
  for kind, (seconds, flops, count) in sorted(kinds.items(), key=lambda kv: -kv[1][0])[:24]:
    rate = flops / seconds if flops else None
    rate_text = "" if rate is None else f"{rate / 1e9:.0f}"
    if rate is not None and peak and rate > 1.5 * peak:
      rate_text = "async"
    rows.append([kind, count, f"{seconds * 1e3:.1f}", f"{100 * seconds / total:.1f}%",
                 rate_text])
  dot_seconds = sum(v[0] for k, v in kinds.items() if k.startswith("dot "))
  return (f"Sum of per-operation times (fastest of {n_steps} traced steps): "
          f"{total * 1e3:.1f} ms, of which dots {dot_seconds * 1e3:.1f} ms "
          f"({100 * dot_seconds / total:.0f}%).\n\n"
          + common.markdown_table(["operation", "count", "ms", "share", "GFLOP/s"], rows))


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Measured:
  name: str
  step_times: list
  mfu_rounds: list
  xla_flops: float | None


def main(argv: list[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  common.add_platform_flags(parser)
  parser.add_argument("--size", default=None, choices=sorted(SIZES),
                      help="model size (default: issue, or quick with --quick)")
  parser.add_argument("--steps", type=int, default=None, help="timed rounds")
  parser.add_argument("--no-baseline", action="store_true", help="skip the Flax baseline")
  parser.add_argument("--profile", action="store_true", help="print the time breakdown")
  parser.add_argument("--attention", default=None, choices=("xla", "cudnn"),
                      help="attention implementation of the declax model (default: declax's)")
  parser.add_argument("--scan-layers", action="store_true", help="TransformerLM(scan_layers=True)")
  parser.add_argument("--compare-attention", action="store_true",
                      help="also run the declax model with jax.nn.dot_product_attention "
                           "(implementation='xla'): declax's attention before/after")
  args = parser.parse_args(argv)
  common.select_platform(args.platform)
  if args.profile:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_enable_xprof_traceme=true").strip()

  import jax
  import optax

  import declax.layers as tl

  size_name = args.size or ("quick" if args.quick else "issue")
  size = SIZES[size_name]
  n_rounds = args.steps or (3 if args.quick else 20)
  device = jax.devices()[0]
  batch = overhead.lm_batch(size)
  optimizer = optax.adam(1e-3)
  rng = jax.random.PRNGKey(1)
  model = with_attention_implementation(
      overhead.declax_lm(size, args.dtype, scan_layers=args.scan_layers), args.attention)
  candidates = [overhead.declax_train_step_candidate("declax", model,
                                                     tl.WeightedCategoryCrossEntropy(),
                                                     optimizer, batch, rng)]
  if args.compare_attention:
    candidates.append(overhead.declax_train_step_candidate(
        "declax_jax_attention", with_attention_implementation(model, "xla"),
        tl.WeightedCategoryCrossEntropy(), optimizer, batch, rng))
  if not args.no_baseline:
    candidates.append(overhead.hand_step_candidate(
        "flax", overhead.flax_lm(size, args.dtype), overhead.cross_entropy_of_logits, optimizer,
        batch, rng))

  compiled = {c.name: c.jitted().lower(c.state, c.batch).compile() for c in candidates}
  steppers = {c.name: common.Stepper(compiled[c.name], c.state, c.batch) for c in candidates}

  # The matmul peak, interleaved with the steps.
  import jax.numpy as jnp

  on_cpu = device.platform == "cpu"
  n = 256 if args.quick else (2048 if on_cpu else 8192)
  matmul_dtype = args.dtype if not on_cpu else "float32"
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(matmul_dtype)
  b = (jax.random.normal(jax.random.PRNGKey(2), (n, n), jnp.float32) / n**0.5).astype(matmul_dtype)
  chain_length = 4 if on_cpu else 8

  @jax.jit
  def matmuls(x):
    for _ in range(chain_length):
      x = jnp.dot(x, b, preferred_element_type=jnp.float32).astype(matmul_dtype)
    return x

  def matmul_round():
    common.block(matmuls(a))

  times = common.interleaved({**steppers, "matmul": matmul_round}, n_steps=n_rounds,
                             warmup=1 if args.quick else 2)
  matmul_flops = chain_length * 2.0 * n**3
  peaks = [matmul_flops / t for t in times["matmul"]]
  published = device_peak = common.device_peak_flops(device, args.dtype)
  model_flops = analytic_flops(size)

  rows = []
  for c in candidates:
    step_times = times[c.name]
    xla = common.xla_flops(compiled[c.name])
    if device.platform == "cpu" or device_peak is None:
      mfu = [model_flops / t / p for t, p in zip(step_times, peaks, strict=True)]
      mfu_xla = [xla / t / p for t, p in zip(step_times, peaks, strict=True)] if xla else None
    else:
      mfu = [model_flops / t / device_peak for t in step_times]
      mfu_xla = [xla / t / device_peak for t in step_times] if xla else None
    best = min(step_times)
    rows.append([
        c.name, f"{c.n_params:,}",
        f"{common.fmt_seconds(common.median(step_times))} "
        f"(±{100 * common.spread(step_times):.0f}%)",
        common.fmt_seconds(best),
        f"{model_flops / common.median(step_times) / 1e9:.1f}",
        f"{100 * common.median(mfu):.1f}%",
        f"{100 * common.median(mfu_xla):.1f}%" if mfu_xla else "n/a",
        f"{100 * model_flops / best / max(peaks):.1f}%" if device.platform == "cpu" else "",
    ])
  peak_text = (f"measured matmul peak ({n}x{n} {matmul_dtype}): median "
               f"{common.median(peaks) / 1e9:.1f} GFLOP/s (±{100 * common.spread(peaks):.0f}%), "
               f"best {max(peaks) / 1e9:.1f} GFLOP/s")
  if published:
    peak_text += (f"; published {args.dtype} peak of {device.device_kind}: "
                  f"{published / 1e12:.0f} TFLOP/s")
  elif device.platform != "cpu":
    peak_text += f"; no published peak known for {device.device_kind!r}: MFU uses the measured one"
  xla_text = ", ".join(f"{c.name} {common.xla_flops(compiled[c.name]) / 1e9:.2f}"
                       for c in candidates if common.xla_flops(compiled[c.name]))
  out = [
      common.header(f"MFU: TransformerLM ({size_name} size) train step", __file__, argv),
      f"size {size}, dtype {args.dtype}, attention {args.attention or 'declax default'}, "
      f"scan_layers={args.scan_layers}",
      f"model FLOPs per step: analytic {model_flops / 1e9:.2f} GFLOP; XLA cost analysis "
      f"{xla_text} GFLOP",
      peak_text, "",
      common.markdown_table(
          ["model", "params", "step (median, ±IQR)", "step (best)", "model GFLOP/s (median)",
           "MFU (analytic)", "MFU (XLA flops)", "best step / best peak"], rows),
      "",
      f"{n_rounds} interleaved rounds (each: one step of every model, one matmul chain); MFU is "
      "the median of per-round ratios.",
  ]
  if args.profile:
    for c in candidates:
      out += ["", f"**Where the time goes: {c.name}**", "",
              profile_breakdown(compiled[c.name], steppers[c.name], peak=max(peaks))]
  text = "\n".join(out)
  print(text)
  return text


if __name__ == "__main__":
  main()
