"""A small training run for the reliability tests, meant to be killed, signalled and resumed.

    python tests/reliability/train_worker.py --workdir W --data-dir D --steps 24 [--kill SPEC]

Trains a tiny MLP with dropout on `declax_digits` (a real grain pipeline, read ahead by the
loop's prefetch thread) with async Orbax checkpoints every `--checkpoint-every` steps, resuming
from `W/checkpoints` when it holds one. Every reported step's loss is appended to
`W/losses-p<process>.jsonl` as `{"step": s, "loss": float.hex(loss), "pid": os.getpid()}` and
flushed at once, so a run killed with SIGKILL leaves the losses it computed. At the end the
parameters go to `W/params-p<process>.npz`.

Stdout markers (for the parent): `resumed <step>` after the state is restored or created,
`step <s>` for each reported step, `done <step> preempted=<bool>` at the end.

`--kill` makes the worker SIGKILL itself at a chosen point (a real SIGKILL: no cleanup runs):
- `step:K`    right after train step K is dispatched (it may still be computing);
- `save:K`    right after the async save of step K starts (its files are being written);
- `commit:K`  when step K is completely written, just before Orbax renames it into place;
- `delete:K`  after step K is committed, before the checkpoints beyond max_to_keep are deleted;
- `restore`   right after the state is restored, before any step.
`--sigterm-at K` sends SIGTERM to itself once step K has been dispatched (preemption).
`--step-delay S` sleeps S seconds per step (slows a run down without changing any number).
`--distributed` joins the 2-process job started by `tests.multihost_utils`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def parse_args(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--steps", type=int, default=24)
  parser.add_argument("--checkpoint-every", type=int, default=4)
  parser.add_argument("--keep", type=int, default=2)
  parser.add_argument("--kill", default="")
  parser.add_argument("--sigterm-at", type=int, default=0)
  parser.add_argument("--distributed", action="store_true")
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--step-delay", type=float, default=0.0)
  return parser.parse_args(argv)


def die() -> None:
  sys.stdout.flush()
  os.kill(os.getpid(), signal.SIGKILL)


def main(argv=None) -> None:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.distributed:
    from tests.multihost_utils import init_worker

    init_worker()

  import jax
  import numpy as np
  import orbax.checkpoint._src.path.atomicity as atomicity

  import declax.layers as tl
  from declax.data import make_pipeline
  from declax.training import Loop, TrainTask, make_optimizer, make_schedule
  from declax.training import checkpoints as ckpt_lib
  from declax.training.metric_writers import MetricWriter

  kind, _, value = args.kill.partition(":")
  kill_step = int(value) if value else None
  process = jax.process_index()

  # ---- kill points inside the checkpointing machinery ----------------------------------------
  original_save = ckpt_lib.Checkpointer.save

  def save(self, step, *a, **k):
    started = original_save(self, step, *a, **k)
    if kind == "save" and step == kill_step:
      die()
    if kind == "delete" and step == kill_step:
      deleter = self._manager._checkpoint_deleter  # noqa: SLF001 - test hook
      deleter.delete_steps = lambda steps: die()
    return started

  ckpt_lib.Checkpointer.save = save
  original_finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize(self, *a, **k):
    if kind == "commit" and self._final_path.name == str(kill_step):  # noqa: SLF001
      die()
    return await original_finalize(self, *a, **k)

  atomicity.AtomicRenameTemporaryPath.finalize = finalize

  # ---- the run ---------------------------------------------------------------------------------
  losses_path = os.path.join(args.workdir, f"losses-p{process}.jsonl")

  class LossLog(MetricWriter):
    def __init__(self):
      os.makedirs(args.workdir, exist_ok=True)
      self._file = open(losses_path, "a")

    def write_scalars(self, step, scalars):
      if "train/loss" in scalars:
        line = {"step": int(step), "loss": float(scalars["train/loss"]).hex(), "pid": os.getpid()}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()
        print(f"step {step}", flush=True)

    def close(self):
      self._file.close()

  model = tl.Serial(tl.Flatten(), tl.Dense(16), tl.Relu(), tl.Dropout(0.1), tl.Dense(10),
                    tl.LogSoftmax())
  schedule = make_schedule("warmup_cosine", learning_rate=1e-2, warmup_steps=3,
                           decay_steps=args.steps)
  data = make_pipeline("declax_digits", "train", args.batch_size // jax.process_count(),
                       data_dir=args.data_dir, seed=3)
  task = TrainTask(data, tl.CrossEntropyLoss(), make_optimizer("adamw", schedule, clip_norm=1.0),
                   n_steps_per_checkpoint=args.checkpoint_every)
  loop = Loop(model, task, output_dir=args.workdir, writers=LossLog(), log_every=1,
              keep_checkpoints=args.keep, print_summary=False, seed=5)
  print(f"resumed {loop.step}", flush=True)
  if kind == "restore":
    die()

  train_step = loop._train_steps[0]  # noqa: SLF001 - test hook around the compiled step

  def step_hook(state, running, batch):
    out = train_step(state, running, batch)
    step = int(loop._step) + 1  # noqa: SLF001 - the step being dispatched
    if kind == "step" and step == kill_step:
      die()
    if args.step_delay:
      time.sleep(args.step_delay)
    if args.sigterm_at and step == args.sigterm_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return out

  loop._train_steps = [step_hook]  # noqa: SLF001
  if args.steps > loop.step:
    loop.run(args.steps - loop.step)
  preempted = loop.preempted
  loop.close()
  flat = {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(loop.state.params)[0]}
  np.savez(os.path.join(args.workdir, f"params-p{process}.npz"), **flat)
  print(f"done {loop.step} preempted={preempted}", flush=True)


if __name__ == "__main__":
  main()
