"""Training and evaluation curves from a work directory's `metrics.jsonl`, drawn as a PNG.

`plot_curves(workdir)` draws one panel per metric (`loss`, `accuracy`, ...) with the training
curve (`train/NAME`) and the evaluation curve (`eval/NAME`) on the same axes, and writes
`WORKDIR/curves.png`. The `declax-plot WORKDIR [--out FILE]` command does the same from a shell.

```python
from declax.plot import plot_curves
path = plot_curves('/tmp/declax-pysrc-lm')        # '/tmp/declax-pysrc-lm/curves.png'
```
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Sequence

from declax.errors import DeclaxError

# Logged every step by the progress reporter; they are not learning curves.
_SKIPPED = {"steps_per_sec", "examples_per_sec", "tokens_per_sec", "num_params", "eta_s",
            "uptime_s"}


class PlotError(DeclaxError, ValueError):
  """The work directory has no metrics to draw (missing, unreadable or empty `metrics.jsonl`)."""


def read_curves(path: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
  """`{metric: {'train' | 'eval': [(step, value), ...]}}` from a `metrics.jsonl` file.

  Non-finite values (written as the strings "nan"/"inf") are kept as floats so a divergence
  shows as a gap; lines that are not JSON (a run killed mid-write) are skipped.
  """
  curves: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      step = record.get("step")
      if not isinstance(step, int):
        continue
      for key, value in record.items():
        split, _, name = key.partition("/")
        if split not in ("train", "eval") or not name or name in _SKIPPED:
          continue
        try:
          curves[name][split].append((step, float(value)))
        except (TypeError, ValueError):
          continue  # texts (samples, summaries) share the file
  return {name: dict(splits) for name, splits in curves.items()}


def plot_curves(workdir: str | os.PathLike, out: str | os.PathLike | None = None) -> str:
  """Draws the curves of `workdir/metrics.jsonl` into `out` (default `workdir/curves.png`)."""
  source = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(source):
    raise PlotError(f"{source} does not exist: pass the work directory of a training run "
                    "(the --workdir given to declax-train)")
  curves = read_curves(source)
  if not curves:
    raise PlotError(f"{source} holds no train/ or eval/ metrics yet: plot again after the "
                    "first log step")
  import matplotlib  # late: only plotting needs it

  matplotlib.use("Agg")  # files only; never needs a display
  import matplotlib.pyplot as plt

  names = sorted(curves, key=lambda n: (n != "loss", n))
  cols = min(3, len(names))
  rows = math.ceil(len(names) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
  for ax, name in zip(axes.flat, names, strict=False):
    for split, style in (("train", "-"), ("eval", "o-")):
      points = sorted(curves[name].get(split, []))
      if points:
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, style, label=split, markersize=3)
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
  for ax in list(axes.flat)[len(names):]:
    ax.set_visible(False)
  fig.suptitle(os.path.basename(os.path.abspath(workdir)))
  fig.tight_layout()
  out = os.fspath(out) if out is not None else os.path.join(workdir, "curves.png")
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def main(argv: Sequence[str] | None = None) -> int:
  """`declax-plot WORKDIR [--out FILE]`: writes the curves PNG and prints its path."""
  parser = argparse.ArgumentParser(prog="declax-plot", description=main.__doc__)
  parser.add_argument("workdir", help="work directory of a training run (holds metrics.jsonl)")
  parser.add_argument("--out", help="PNG to write (default: WORKDIR/curves.png)")
  args = parser.parse_args(argv)
  try:
    print(plot_curves(args.workdir, args.out))
  except (DeclaxError, OSError) as error:
    print(f"declax-plot: error: {error}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
