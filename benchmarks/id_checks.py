"""What the in-step label and token-id check (`Loop(check_ids=True)`, the default) costs per step.

Two `Loop`s on the same small TransformerLM and batch, one with `check_ids=True` and one with
`check_ids=False`; each round times `k` calls of each loop's own compiled train step (sharded,
donated state and running metrics, as `Loop.run` calls it) on a batch already on the device,
interleaved. The overhead is the median of the per-round ratios checked / unchecked - 1
(target: negligible, <= 1%), in wall and in process CPU time. On a loaded CPU host the wall
times are noisy (see the IQR), so the table also gives XLA's own cost analysis of the two compiled
steps (FLOPs, bytes accessed): a deterministic measure of the work the check adds.

    python benchmarks/id_checks.py              # ~1 minute on 2 CPU cores
    python benchmarks/id_checks.py --quick
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, overhead  # noqa: E402

SIZES = {"full": dict(vocab=256, d_model=64, d_ff=256, n_layers=2, n_heads=4, max_len=64,
                      batch=8),
         "quick": overhead.LM_SIZES["quick"]}


def build_loop(size: dict, dtype: str, check_ids: bool):
  """A `Loop` (no output_dir, no writers) on the LM, and its batch placed on the mesh."""
  import numpy as np
  import optax

  import declax.layers as tl
  from declax import sharding
  from declax.training import Loop, TrainTask
  from declax.training.metric_writers import MultiWriter

  batch = tuple(np.asarray(a) for a in overhead.lm_batch(size))
  task = TrainTask(itertools.repeat(batch), tl.WeightedCategoryCrossEntropy(), optax.adam(1e-3),
                   n_steps_per_checkpoint=None)
  loop = Loop(overhead.declax_lm(size, dtype), task, writers=MultiWriter([]),
              print_summary=False, check_ids=check_ids)
  return loop, sharding.shard_batch(batch, loop.mesh)



def costs(loop) -> dict[str, float]:
  """XLA's cost analysis of the loop's compiled train step: flops and bytes accessed."""
  analysis = loop.lower_train_step().compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return {k: float((analysis or {}).get(k, float("nan"))) for k in ("flops", "bytes accessed")}


def main(argv: list[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  common.add_platform_flags(parser)
  parser.add_argument("--rounds", type=int, default=None)
  args = parser.parse_args(argv)
  common.select_platform(args.platform)
  size = SIZES["quick" if args.quick else "full"]
  k, rounds = (2, 3) if args.quick else (10, 30)
  rounds = args.rounds or rounds
  loops = {name: build_loop(size, args.dtype, name == "checked")
           for name in ("checked", "unchecked")}
  cpu: dict[str, list[float]] = {}
  runs = {n: common.bare_loop_steps(loop, batch, k) for n, (loop, batch) in loops.items()}
  times = common.interleaved(runs, n_steps=rounds, warmup=2, cpu_times=cpu)
  ratio, noise = common.paired_ratio(times["checked"], times["unchecked"])
  cpu_ratio, cpu_noise = common.paired_ratio(cpu["checked"], cpu["unchecked"])
  cost = {n: costs(loop) for n, (loop, _) in loops.items()}
  rows = [[n, common.fmt_seconds(common.median(times[n]) / k), f"{common.spread(times[n]):.1%}",
           common.fmt_seconds(common.median(cpu[n]) / k), f"{cost[n]['flops']:.4g}",
           common.fmt_bytes(cost[n]["bytes accessed"])] for n in times]
  within = cpu_ratio - 1 <= max(0.01, cpu_noise)  # (CPU time: within its own noise)
  extra = {key: cost["checked"][key] / cost["unchecked"][key] - 1 for key in cost["checked"]}
  verdict = (f"- in-step id check: {100 * (ratio - 1):+.2f}% wall (±{100 * noise:.1f}%), "
             f"{100 * (cpu_ratio - 1):+.2f}% CPU time (±{100 * cpu_noise:.1f}%) per step; "
             f"XLA cost {100 * extra['flops']:+.3f}% flops, "
             f"{100 * extra['bytes accessed']:+.3f}% bytes accessed (target <= 1%): "
             f"{'met' if max(extra.values()) <= 0.01 and within else 'NOT met'}")
  shape = (f"TransformerLM vocab {size['vocab']} d{size['d_model']} ff{size['d_ff']} "
           f"{size['n_layers']} layers, batch {size['batch']}x{size['max_len']}, Adam")
  text = "\n".join([common.header(f"In-step id check: {shape}", __file__, argv),
                    common.markdown_table(["train step", "wall per step (median)", "IQR",
                                           "CPU per step", "XLA flops", "XLA bytes accessed"],
                                          rows),
                    "", f"{rounds} interleaved rounds of {k} steps.", verdict, ""])
  print(text)
  for loop, _ in loops.values():
    loop.close()
  return text


if __name__ == "__main__":
  main()
