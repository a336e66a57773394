"""One command for a GPU or TPU: declax vs hand-written Flax, the Loop, long sequences, decoding.

On whatever platform JAX finds, in one process, side by side:

1. **step**: TransformerLM train step (bf16 compute, float32 parameters), declax vs hand-written
   Flax+Optax, at ~100M and ~350M parameters (and ~1B with `--sizes 100m,350m,1b` when memory
   allows): median step time, the declax/Flax ratio, MFU against the device's published peak
   (or the measured matmul peak where none is known), compile time, compiled memory;
2. **loop**: the same model trained through `declax.training.Loop.run` (data feeding, metrics)
   against the hand-written Flax step: the number users see;
3. **long**: `ReformerLM` (LSH attention, reversible layers, chunked feed-forward) against
   `TransformerLM` at 4k / 16k / 64k tokens: compiled temporary memory of the gradient and step
   time (`OOM` where a compile or step runs out of memory);
4. **decode**: tokens/s of `declax.decoding.autoregressive_sample` with the KV cache, batch 1
   and 32.

It writes `accelerator.json` (every number) and `accelerator.md` (the tables, with the device
name) into `--out`. `--smoke` runs every path at tiny sizes on CPU (CI runs it), so bf16, the
attention selection, remat, donation and the Reformer all meet the code before they meet a GPU.

    python benchmarks/accelerator.py --out /tmp/acc                 # on a GPU/TPU VM
    python benchmarks/accelerator.py --smoke --out /tmp/acc         # CPU, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, mfu, overhead  # noqa: E402

LM_SIZES = {
    "100m": mfu.SIZES["100m"],
    # GPT-2-medium shaped: ~369M parameters (302M in the blocks).
    "350m": dict(vocab=32768, d_model=1024, d_ff=4096, n_layers=24, n_heads=16, max_len=1024,
                 batch=16),
    # ~940M parameters.
    "1b": dict(vocab=32768, d_model=2048, d_ff=8192, n_layers=16, n_heads=16, max_len=1024,
               batch=8),
    "smoke": dict(vocab=64, d_model=32, d_ff=64, n_layers=2, n_heads=2, max_len=32, batch=4),
}
LONG_MODEL = dict(vocab=256, d_model=512, d_ff=2048, n_layers=6, n_heads=8)
LONG_LENGTHS = (4096, 16384, 65536)
SMOKE_LONG_MODEL = dict(vocab=32, d_model=16, d_ff=32, n_layers=2, n_heads=2)
SMOKE_LONG_LENGTHS = (128, 256)


def _is_oom(error: BaseException) -> bool:
  text = f"{type(error).__name__}: {error}".lower()
  return "resource_exhausted" in text or "out of memory" in text or "oom" in text


# ------------------------------------------------------------------------------------------------
# 1. Train step: declax vs hand-written Flax
# ------------------------------------------------------------------------------------------------


def step_rows(sizes: list[str], dtype: str, n_steps: int, peak: float) -> list[dict]:
  rows = []
  for name in sizes:
    size = LM_SIZES[name]
    try:
      candidates = overhead.lm_candidates(size, dtype, with_train_step=False)
      results = overhead.measure(candidates, n_steps=n_steps, compile_repeats=1)
    except Exception as error:  # noqa: BLE001 (a size that does not fit is a row, not a crash)
      if not _is_oom(error):
        raise
      rows.append({"size": name, "error": "OOM"})
      continue
    flops = mfu.analytic_flops(size)
    flax, declax = results["flax"], results["declax"]
    step = {k: common.median(r.step_times) for k, r in results.items()}
    rows.append({
        "size": name, "params": declax.n_params, "dtype": dtype,
        "flax_step_s": step["flax"], "declax_step_s": step["declax"],
        "ratio": step["declax"] / step["flax"],
        "flax_mfu": flops / step["flax"] / peak, "declax_mfu": flops / step["declax"] / peak,
        "flax_compile_s": flax.compile_times[0], "declax_compile_s": declax.compile_times[0],
        "declax_peak_bytes": declax.memory.peak if declax.memory else None,
        "flax_peak_bytes": flax.memory.peak if flax.memory else None,
    })
  return rows


# ------------------------------------------------------------------------------------------------
# 2. Through the Loop
# ------------------------------------------------------------------------------------------------


def loop_row(size_name: str, dtype: str, steps_per_round: int, rounds: int,
             flax_step_s: float | None, peak: float) -> dict:
  """`Loop.run` steps/s on a repeated numpy batch (host -> device every step, metrics kept)."""
  import io

  import numpy as np
  import optax

  import declax.layers as tl
  from declax.training import Loop, TrainTask
  from declax.training.metric_writers import ConsoleWriter, MultiWriter

  size = LM_SIZES[size_name]
  batch = tuple(np.asarray(a) for a in overhead.lm_batch(size))
  task = TrainTask(itertools.repeat(batch), tl.WeightedCategoryCrossEntropy(),
                   optax.adam(1e-3), n_steps_per_checkpoint=None)
  loop = Loop(overhead.declax_lm(size, dtype), task, output_dir=None,
              writers=MultiWriter([ConsoleWriter(stream=io.StringIO())]), print_summary=False)
  try:
    loop.run(steps_per_round)  # compiles
    times = []
    for _ in range(rounds):
      start = time.perf_counter()
      loop.run(steps_per_round)
      times.append((time.perf_counter() - start) / steps_per_round)
  finally:
    loop.close()
  step = common.median(times)
  flops = mfu.analytic_flops(size)
  return {"size": size_name, "loop_step_s": step, "loop_mfu": flops / step / peak,
          "flax_step_s": flax_step_s,
          "ratio_vs_flax": step / flax_step_s if flax_step_s else None}


# ------------------------------------------------------------------------------------------------
# 3. Long sequences: ReformerLM vs TransformerLM
# ------------------------------------------------------------------------------------------------


def long_models(model: dict, length: int) -> dict[str, Any]:
  from declax.models import ReformerLM, TransformerLM

  common_kwargs = dict(d_model=model["d_model"], d_ff=model["d_ff"], n_layers=model["n_layers"],
                       n_heads=model["n_heads"], max_len=length, dropout=0.0)
  chunk = min(256, length // 4)
  return {
      "TransformerLM": TransformerLM(model["vocab"], **common_kwargs),
      "ReformerLM": ReformerLM(model["vocab"], attention_type="LSHSelfAttention",
                               pos_type="fixed-base", ff_chunk_size=chunk,
                               **{**common_kwargs, "dropout": 0.0}),
  }


def long_rows(model: dict, lengths: tuple[int, ...], n_steps: int) -> list[dict]:
  import jax
  import optax

  import declax.layers as tl

  rows = []
  for length in lengths:
    batch = overhead.lm_batch({"batch": 1, "max_len": length, "vocab": model["vocab"]})
    for name, net in long_models(model, length).items():
      row = {"model": name, "length": length}
      try:
        candidate = overhead.declax_train_step_candidate(
            name, net, tl.WeightedCategoryCrossEntropy(), optax.adam(1e-3), batch,
            jax.random.PRNGKey(0))
        compile_s, compiled = common.time_compile(candidate.jitted,
                                                  (candidate.state, candidate.batch))
        memory = common.memory(compiled)
        stepper = common.Stepper(compiled, candidate.state, candidate.batch)
        times = common.interleaved({name: stepper}, n_steps=n_steps, warmup=1)[name]
        row.update(compile_s=compile_s, step_s=common.median(times),
                   temp_bytes=memory.temporaries if memory else None,
                   temp_bytes_per_token=memory.temporaries / length if memory else None)
      except Exception as error:  # noqa: BLE001
        if not _is_oom(error):
          raise
        row["error"] = "OOM"
      rows.append(row)
      jax.clear_caches()
  return rows


# ------------------------------------------------------------------------------------------------
# 4. Decoding with the KV cache
# ------------------------------------------------------------------------------------------------


def decode_rows(size_name: str, dtype: str, batches: tuple[int, ...], length: int) -> list[dict]:
  import jax
  import jax.numpy as jnp

  from declax import decoding
  from declax.layers import with_mode

  size = LM_SIZES[size_name]
  model = overhead.declax_lm(size, dtype)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size["max_len"]), jnp.int32))
  predict = with_mode(model, "predict")
  rows = []
  for batch in batches:
    prefix = jnp.ones((batch, 1), jnp.int32)

    def run(prefix=prefix):
      return jax.block_until_ready(decoding.autoregressive_sample(
          predict, {"params": variables["params"]}, prefix, max_length=length, temperature=0.0))

    run()  # compiles
    times = common.interleaved({"decode": run}, n_steps=3, warmup=0)["decode"]
    rows.append({"size": size_name, "batch": batch, "tokens": length,
                 "tokens_per_s": batch * length / common.median(times)})
  return rows


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
  sizes: list[str]
  dtype: str
  n_steps: int
  loop_steps: int
  loop_rounds: int
  long_model: dict
  long_lengths: tuple[int, ...]
  decode_size: str
  decode_batches: tuple[int, ...]
  decode_length: int


def settings_for(args: argparse.Namespace) -> Settings:
  if args.smoke:
    return Settings(["smoke"], args.dtype, 2, 2, 1, SMOKE_LONG_MODEL, SMOKE_LONG_LENGTHS,
                    "smoke", (1, 4), 8)
  return Settings(args.sizes.split(","), args.dtype, 20, 20, 3, LONG_MODEL, LONG_LENGTHS,
                  "100m", (1, 32), 256)


def _fmt(value: Any, kind: str) -> str:
  if value is None:
    return "n/a"
  return {"s": lambda v: common.fmt_seconds(v), "pct": lambda v: f"{100 * v:.1f}%",
          "x": lambda v: f"{v:.3f}x", "b": lambda v: common.fmt_bytes(v),
          "n": lambda v: f"{v:,.0f}"}[kind](value)


def markdown(results: dict) -> str:
  step = [[r["size"], "OOM", "", "", "", "", "", ""] if "error" in r else
          [r["size"], _fmt(r["params"], "n"), _fmt(r["flax_step_s"], "s"),
           _fmt(r["declax_step_s"], "s"), _fmt(r["ratio"], "x"), _fmt(r["declax_mfu"], "pct"),
           f"{r['flax_compile_s']:.1f} s / {r['declax_compile_s']:.1f} s",
           _fmt(r["declax_peak_bytes"], "b")] for r in results["step"]]
  loop = [[r["size"], _fmt(r["loop_step_s"], "s"), _fmt(r["loop_mfu"], "pct"),
           _fmt(r["ratio_vs_flax"], "x")] for r in results["loop"]]
  long = [[r["model"], r["length"], "OOM", "", "", ""] if "error" in r else
          [r["model"], r["length"], _fmt(r["step_s"], "s"), _fmt(r["temp_bytes"], "b"),
           _fmt(r["temp_bytes_per_token"], "b"), f"{r['compile_s']:.1f} s"]
          for r in results["long"]]
  decode = [[r["size"], r["batch"], r["tokens"], f"{r['tokens_per_s']:,.0f}"]
            for r in results["decode"]]
  return "\n".join([
      results["header"], f"peak used for MFU: {results['peak']}", "",
      "**Train step: TransformerLM, declax vs hand-written Flax+Optax**", "",
      common.markdown_table(["size", "params", "Flax step", "declax step", "declax/Flax",
                             "declax MFU", "compile Flax / declax", "declax peak memory"], step),
      "", "**Through `Loop.run`** (feeding a new batch and keeping metrics every step)", "",
      common.markdown_table(["size", "Loop step", "Loop MFU", "Loop / Flax step"], loop),
      "", "**Long sequences: ReformerLM vs TransformerLM (batch 1, gradient step)**", "",
      common.markdown_table(["model", "tokens", "step", "temp memory", "temp / token",
                             "compile"], long),
      "", "**Decoding with the KV cache (greedy)**", "",
      common.markdown_table(["size", "batch", "new tokens", "tokens/s"], decode), ""])


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU: every code path")
  parser.add_argument("--sizes", default="100m,350m", help="comma list of " + ",".join(LM_SIZES))
  parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
  parser.add_argument("--platform", default=None, choices=("cpu", "gpu", "tpu"))
  parser.add_argument("--only", default="step,loop,long,decode", help="sections to run")
  parser.add_argument("--out", default="benchmark-results", help="folder for the JSON and table")
  args = parser.parse_args(argv)
  common.select_platform("cpu" if args.smoke and not args.platform else args.platform)
  import jax

  s = settings_for(args)
  sections = set(args.only.split(","))
  device = jax.devices()[0]
  published = common.device_peak_flops(device, s.dtype)
  peak = published or common.matmul_peak(512 if args.smoke else 4096, s.dtype)[0]
  results: dict[str, Any] = {
      "device": getattr(device, "device_kind", device.platform), "platform": device.platform,
      "header": common.header("Accelerator benchmark", __file__, argv),
      "peak": f"{peak / 1e12:.1f} TFLOP/s ({'published' if published else 'measured matmul'})",
      "step": [], "loop": [], "long": [], "decode": []}
  if "step" in sections:
    results["step"] = step_rows(s.sizes, s.dtype, s.n_steps, peak)
  flax_steps = {r["size"]: r.get("flax_step_s") for r in results["step"]}
  if "loop" in sections:
    results["loop"] = [loop_row(name, s.dtype, s.loop_steps, s.loop_rounds,
                                flax_steps.get(name), peak) for name in s.sizes[-1:]]
  if "long" in sections:
    results["long"] = long_rows(s.long_model, s.long_lengths, 2 if args.smoke else 5)
  if "decode" in sections:
    results["decode"] = decode_rows(s.decode_size, s.dtype, s.decode_batches, s.decode_length)
  os.makedirs(args.out, exist_ok=True)
  text = markdown(results)
  with open(os.path.join(args.out, "accelerator.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(args.out, "accelerator.md"), "w") as f:
    f.write(text)
  print(text)
  return results


if __name__ == "__main__":
  main()
