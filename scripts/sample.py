"""Sample text from a trained byte-level language model's checkpoint.

    python scripts/sample.py --workdir /tmp/declax/pysrc_rnn_lm --prompt "def " \
        [--max_length 200 --temperature 0.8 --top_k 40 --num_samples 2 --seed 0]

The workdir is one written by `scripts/train.py`: its `config.json` says which model to build
and its newest checkpoint (or `--step`) gives the parameters. The prompt is encoded as UTF-8
bytes (the models' vocabulary is 256 bytes); sampling stops at byte 0, which marks the end of a
file in `declax_pysrc` (`--eos_id -1` never stops early). `--temperature 0` is greedy.
"""

from __future__ import annotations

import sys

from absl import app, flags
from absl import logging as absl_logging

from declax.training.from_config import sample_from_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir (config.json + checkpoints).")
_PROMPT = flags.DEFINE_string("prompt", "def ", "Text to continue.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", 200, "Bytes to generate (at most).")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 is greedy.")
_TOP_K = flags.DEFINE_integer("top_k", None, "Sample among the k most likely bytes only.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Independent samples of the prompt.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_EOS_ID = flags.DEFINE_integer("eos_id", 0, "Stop a sample at this byte (-1: never).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.mark_flag_as_required("workdir")


def _run(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore at INFO
  eos_id = None if _EOS_ID.value < 0 else _EOS_ID.value
  texts = sample_from_workdir(_WORKDIR.value, _PROMPT.value, _MAX_LENGTH.value,
                              _TEMPERATURE.value, _TOP_K.value, _NUM_SAMPLES.value, _SEED.value,
                              eos_id, _STEP.value)
  for i, text in enumerate(texts):
    if len(texts) > 1:
      print(f"==== sample {i} ====")
    print(text)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(_run)
