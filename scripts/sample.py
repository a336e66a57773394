"""Sample from (or translate with) a trained model's checkpoint, through its own tokenizer.

    python scripts/sample.py --workdir /tmp/declax/pysrc_rnn_lm --prompt "def " \
        [--max_length 200 --temperature 0.8 --top_k 40 --num_samples 2 --seed 0]
    python scripts/sample.py --workdir /tmp/declax/translate_de --prompt "File not found"

The workdir is one written by `scripts/train.py`: its `config.json` says which model to build
and its newest checkpoint (or `--step`) gives the parameters. The prompt is encoded with the
workdir's tokenizer (`tokenizer.json`, + `spm.model`; UTF-8 bytes when there is none, as for the
byte LMs). A language model continues the prompt; an encoder-decoder (`Transformer`) translates
it by beam search (`--beam_size`). Decoding stops at the tokenizer's EOS (byte 0, the end of a
file, for byte models; `--eos_id -1` never stops early). `--temperature 0` is greedy. A prompt
plus `--max_length` beyond the model's context is an error naming both numbers.
"""

from __future__ import annotations

import sys

from absl import app, flags
from absl import logging as absl_logging

from declax.errors import DeclaxError
from declax.training.from_config import sample_from_workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir (config.json + checkpoints).")
_PROMPT = flags.DEFINE_string("prompt", "def ", "Text to continue.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", 200, "Tokens to generate (at most).")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 is greedy.")
_TOP_K = flags.DEFINE_integer("top_k", None, "Sample among the k most likely tokens only.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Independent samples of the prompt.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_EOS_ID = flags.DEFINE_integer("eos_id", None,
                               "Stop at this id (default: the tokenizer's EOS; -1: never).")
_BEAM_SIZE = flags.DEFINE_integer("beam_size", 4, "Beams when translating (encoder-decoders).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.mark_flag_as_required("workdir")


def _run(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore at INFO
  eos_id = "auto" if _EOS_ID.value is None else None if _EOS_ID.value < 0 else _EOS_ID.value
  try:
    texts = sample_from_workdir(_WORKDIR.value, _PROMPT.value, _MAX_LENGTH.value,
                                _TEMPERATURE.value, _TOP_K.value, _NUM_SAMPLES.value,
                                _SEED.value, eos_id, _STEP.value, beam_size=_BEAM_SIZE.value)
  except DeclaxError as error:  # a bad prompt, length or vocabulary: the message says why
    sys.exit(f"sample.py: error: {error}")
  for i, text in enumerate(texts):
    if len(texts) > 1:
      print(f"==== sample {i} ====")
    print(text)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(_run)
