"""What `declax.training.Loop.run` adds over its own compiled train step called in a bare loop.

For each model (the MLP and TransformerLM of `benchmarks/overhead.py`), one `Loop` is built
(no output_dir, so no checkpoints; a console writer into a string buffer, `log_every=100`).
Each round then times, in alternating order:

- `loop.run(k)`: the real loop: next batch from the task's iterator (numpy), `shard_batch`
  (host -> device), the jitted step, metric bookkeeping, the final metric fetch and report;
- bare: the same compiled step (`loop._train_steps[0]`) called `k` times on a batch already on the
  device, then one `block_until_ready`;
- fed: like bare, but each step first puts the (numpy) batch on the device with one
  `jax.device_put`: the least any loop must do to feed new data every step.

All continue from the same train state. The overhead is the median over rounds of
time(loop) / time(bare) - 1 (target: <= 3%), in wall time and in process CPU time (on 2 cores
the host's Python work competes with XLA's threads, so CPU time is a real cost too, and it is
less disturbed by other jobs on the machine); "vs fed" separates the loop's own bookkeeping from
the cost of moving a new batch to the device each step.

    python benchmarks/loop_overhead.py              # ~2 minutes on 2 CPU cores
    python benchmarks/loop_overhead.py --quick
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, overhead  # noqa: E402


def build_loop(model_name: str, quick: bool, dtype: str):
  """A `Loop` on an endless iterator of one numpy batch, and that batch."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import declax.layers as tl
  from declax.training import Loop, TrainTask
  from declax.training.metric_writers import ConsoleWriter, MultiWriter

  size = "quick" if quick else "full"
  if model_name == "mlp":
    s = overhead.MLP_SIZES[size]
    from declax.models import MLP

    model = MLP(layer_widths=s["widths"], n_classes=s["n_classes"])
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    x = np.asarray(jax.random.normal(keys[0], (s["batch"], *s["image"], 1), jnp.float32))
    y = np.asarray(jax.random.randint(keys[1], (s["batch"],), 0, s["n_classes"]))
    batch = (x, y, np.ones((s["batch"],), np.float32))
    loss = tl.CrossEntropyLoss()
  elif model_name == "lm":
    s = overhead.LM_SIZES[size]
    model = overhead.declax_lm(s, dtype)
    batch = tuple(np.asarray(a) for a in overhead.lm_batch(s))
    loss = tl.WeightedCategoryCrossEntropy()
  else:
    raise SystemExit(f"unknown model {model_name!r}: use mlp, lm")
  task = TrainTask(itertools.repeat(batch), loss, optax.adam(1e-3), n_steps_per_checkpoint=None)
  writer = MultiWriter([ConsoleWriter(stream=io.StringIO())])
  loop = Loop(model, task, output_dir=None, writers=writer, print_summary=False,
              handle_signals=True)
  return loop, batch


def measure(loop, batch, steps_per_round: int, rounds: int,
            cpu_times: dict | None = None) -> dict[str, list[float]]:
  import jax

  from declax import sharding

  on_device = sharding.shard_batch(batch, loop.mesh)
  batch_sharding = sharding.batch_sharding(loop.mesh)
  # The loop's own jitted step (shardings, donated state and running metrics).
  train_step = loop._train_steps[0]
  buffer = loop._metrics[0]

  def run_loop():
    loop.run(steps_per_round)

  run_bare = common.bare_loop_steps(loop, on_device, steps_per_round)

  def run_fed():
    with sharding.mesh_context(loop.mesh, loop.rules):
      state = loop.state
      for _ in range(steps_per_round):
        state, buffer.running = train_step(state, buffer.running,
                                           jax.device_put(batch, batch_sharding))
      common.block((state, buffer.running))
      loop.state = state

  return common.interleaved({"loop": run_loop, "bare": run_bare, "fed": run_fed},
                            n_steps=rounds, warmup=1, cpu_times=cpu_times)


def main(argv: list[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  common.add_platform_flags(parser)
  parser.add_argument("--models", default="mlp,lm")
  parser.add_argument("--rounds", type=int, default=None)
  args = parser.parse_args(argv)
  common.select_platform(args.platform)
  rows, verdicts = [], []
  settings = {"mlp": (100, 30), "lm": (3, 12)} if not args.quick else {"mlp": (5, 2), "lm": (2, 2)}
  for name in [m.strip() for m in args.models.split(",") if m.strip()]:
    loop, batch = build_loop(name, args.quick, args.dtype)
    k, rounds = settings[name]
    rounds = args.rounds or rounds
    cpu: dict[str, list[float]] = {}
    times = measure(loop, batch, k, rounds, cpu)
    ratio, noise = common.paired_ratio(times["loop"], times["bare"])
    cpu_ratio, cpu_noise = common.paired_ratio(cpu["loop"], cpu["bare"])
    fed_ratio, fed_noise = common.paired_ratio(times["loop"], times["fed"])
    fed_cpu, _ = common.paired_ratio(cpu["loop"], cpu["fed"])
    loop_rate = k / common.median(times["loop"])
    bare_rate = k / common.median(times["bare"])
    fed_rate = k / common.median(times["fed"])
    rows.append([name, k, rounds, f"{bare_rate:.2f}", f"{fed_rate:.2f}", f"{loop_rate:.2f}",
                 f"{100 * (ratio - 1):+.1f}% (±{100 * noise:.1f}%)",
                 f"{100 * (min(times['loop']) / min(times['bare']) - 1):+.1f}%",
                 f"{100 * (cpu_ratio - 1):+.1f}% (±{100 * cpu_noise:.1f}%)",
                 f"{100 * (fed_ratio - 1):+.1f}% (±{100 * fed_noise:.1f}%)",
                 f"{100 * (fed_cpu - 1):+.1f}%"])
    verdicts.append(f"- {name}: Loop.run overhead over the bare step {100 * (ratio - 1):+.1f}% "
                    f"wall, {100 * (cpu_ratio - 1):+.1f}% CPU time (target <= 3%): "
                    f"{'met' if max(ratio, cpu_ratio) <= 1.03 else 'NOT met'}; over the fed "
                    f"step {100 * (fed_ratio - 1):+.1f}% wall, {100 * (fed_cpu - 1):+.1f}% CPU")
    loop.close()
  table = common.markdown_table(
      ["model", "steps/round", "rounds", "bare steps/s", "fed steps/s", "Loop.run steps/s",
       "overhead vs bare (median of per-round ratios, ±IQR)", "vs bare (best/best)",
       "CPU-time overhead vs bare", "overhead vs fed", "CPU-time overhead vs fed"], rows)
  title = "Loop overhead: Loop.run vs the bare compiled step"
  text = "\n".join([common.header(title, __file__, argv), table,
                    "", *verdicts, ""])
  print(text)
  return text


if __name__ == "__main__":
  main()
