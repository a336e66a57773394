"""Export a trained model as one StableHLO file that needs only `jax` to run.

    python scripts/export.py /tmp/declax/digits_mlp /tmp/digits_mlp.stablehlo [--step 500]

The workdir is one written by `scripts/train.py`: its `config.json` rebuilds the model (in
`'eval'` mode), its newest checkpoint (or `--step`) gives the variables, and its data gives the
input shapes. The batch dimension is symbolic, so the file serves any batch size:

```python
import jax
predict = jax.export.deserialize(open('/tmp/digits_mlp.stablehlo', 'rb').read()).call
```
(or `declax.export.load(path)`, which does the same).
"""

from __future__ import annotations

import sys

from absl import app, flags
from absl import logging as absl_logging

_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")


def export_workdir(workdir: str, out: str, step: int | None = None) -> str:
  """Writes the model and variables of `workdir` to `out` (`declax.export`); returns a summary."""
  from declax import export
  from declax.training.from_config import model_input_specs, restore_from_workdir

  model, variables, config, step = restore_from_workdir(workdir, step, mode="eval")
  specs = model_input_specs(config)[: model.n_in]
  export.save(export.export(model, variables, *specs), out)
  inputs = ", ".join(f"{s.dtype}[b,{','.join(map(str, s.shape[1:]))}]" for s in specs)
  return f"wrote {out}: {config.model.name} at step {step}, inputs ({inputs})"


def _run(argv) -> None:
  if len(argv) != 3:
    raise app.UsageError("usage: export.py WORKDIR OUT [--step N]")
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore at INFO
  from declax.errors import DeclaxError

  try:
    print(export_workdir(argv[1], argv[2], _STEP.value))
  except DeclaxError as error:
    print(f"export.py: error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(_run)
