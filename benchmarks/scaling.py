"""How declax's TransformerLM train step scales: with depth (unrolled vs `scan_layers=True`) and
with the batch size.

Model: the issue's TransformerLM (vocab 256, d_model 256, d_ff 1024, 4 heads, 256 tokens per
sequence, dropout 0, Adam), trained by declax's own train step (`make_train_step`, donated
state). For every depth in `--layers` the unrolled and the scanned model are compiled (trace +
lower + compile from cleared caches); then all of them are stepped round-robin (one step of
each per round, so load from other jobs spreads over all). The same for every batch size in
`--batches` (unrolled, 4 layers). Step times are medians over `--steps` rounds; model GFLOP/s
use the analytic count of `benchmarks/mfu.py`.

    python benchmarks/scaling.py                      # ~6 minutes on 2 CPU cores
    python benchmarks/scaling.py --layers 2,4 --batches 8,16 --steps 3
    python benchmarks/scaling.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, mfu, overhead  # noqa: E402


def candidate(size: dict, dtype: str, scan_layers: bool, name: str) -> overhead.Candidate:
  import jax
  import optax

  import declax.layers as tl

  model = overhead.declax_lm(size, dtype, scan_layers=scan_layers)
  return overhead.declax_train_step_candidate(name, model, tl.WeightedCategoryCrossEntropy(),
                                              optax.adam(1e-3), overhead.lm_batch(size),
                                              jax.random.PRNGKey(1))


def measure(cands: list[overhead.Candidate], n_steps: int) -> dict[str, tuple[float, list]]:
  """`{name: (compile seconds, step times)}`. Every candidate is compiled first, then all are
  stepped round-robin (one step each per round), so load from other jobs hits them alike."""
  compiled, compile_s = {}, {}
  for c in cands:
    compile_s[c.name], compiled[c.name] = common.time_compile(c.jitted, (c.state, c.batch))
  steppers = {c.name: common.Stepper(compiled[c.name], c.state, c.batch) for c in cands}
  times = common.interleaved(steppers, n_steps=n_steps, warmup=1)
  return {c.name: (compile_s[c.name], times[c.name]) for c in cands}


def depth_table(base: dict, layers: list[int], n_steps: int, dtype: str) -> str:
  cands, sizes = [], {}
  for n in layers:
    sizes[n] = {**base, "n_layers": n}
    cands += [candidate(sizes[n], dtype, False, f"unrolled{n}"),
              candidate(sizes[n], dtype, True, f"scan{n}")]
  results = measure(cands, n_steps)
  params = {c.name: c.n_params for c in cands}
  rows = []
  for n in layers:
    (cu, tu), (cs, ts) = results[f"unrolled{n}"], results[f"scan{n}"]
    flops = mfu.analytic_flops(sizes[n])
    ratio, _ = common.paired_ratio(ts, tu)
    rows.append([n, f"{params[f'unrolled{n}']:,}",
                 common.fmt_seconds(common.median(tu)), common.fmt_seconds(common.median(ts)),
                 f"{ratio:.2f}", f"{cu:.1f} s", f"{cs:.1f} s",
                 f"{flops / common.median(tu) / 1e9:.1f}",
                 f"{flops / common.median(ts) / 1e9:.1f}"])
  return common.markdown_table(
      ["n_layers", "params", "step (unrolled)", "step (scan)", "scan/unrolled",
       "compile (unrolled)", "compile (scan)", "GFLOP/s (unrolled)", "GFLOP/s (scan)"], rows)


def batch_table(base: dict, batches: list[int], n_steps: int, dtype: str) -> str:
  sizes = {b: {**base, "batch": b} for b in batches}
  results = measure([candidate(sizes[b], dtype, False, f"batch{b}") for b in batches], n_steps)
  rows = []
  for b in batches:
    compile_s, times = results[f"batch{b}"]
    step = common.median(times)
    tokens = b * sizes[b]["max_len"]
    rows.append([b, tokens, common.fmt_seconds(step), f"{tokens / step:,.0f}",
                 f"{mfu.analytic_flops(sizes[b]) / step / 1e9:.1f}", f"{compile_s:.1f} s"])
  return common.markdown_table(
      ["batch", "tokens/step", "step (median)", "tokens/s", "model GFLOP/s", "compile"], rows)


def main(argv: list[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  common.add_platform_flags(parser)
  parser.add_argument("--layers", default=None, help="comma-separated depths (default 2,4,8,16)")
  parser.add_argument("--batches", default=None, help="comma-separated batch sizes (4,8,16,32)")
  parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
  args = parser.parse_args(argv)
  common.select_platform(args.platform)
  base = dict(overhead.LM_SIZES["quick" if args.quick else "full"])
  layers = [int(x) for x in (args.layers or ("1,2" if args.quick else "2,4,8,16")).split(",")]
  batches = [int(x) for x in (args.batches or ("1,2" if args.quick else "4,8,16,32")).split(",")]
  n_steps = args.steps or (2 if args.quick else 7)
  out = [common.header("Scaling: TransformerLM step and compile time", __file__, argv),
         f"base size {base}, dtype {args.dtype}; {n_steps} timed steps per configuration "
         "(medians); compile = trace + lower + compile from cleared caches.", "",
         "**Depth** (batch {batch}, unrolled vs scan_layers=True, all stepped round-robin)".format(
             **base), "", depth_table(base, layers, n_steps, args.dtype), "",
         f"**Batch size** (unrolled, {base['n_layers']} layers)", "",
         batch_table(base, batches, n_steps, args.dtype), ""]
  text = "\n".join(out)
  print(text)
  return text


if __name__ == "__main__":
  main()
