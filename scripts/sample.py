"""Sample text from a trained byte-level language model's checkpoint.

    python scripts/sample.py --workdir /tmp/declax/pysrc_rnn_lm --prompt "def " \
        [--max_length 200 --temperature 0.8 --top_k 40 --num_samples 2 --seed 0]

The workdir is one written by `scripts/train.py`: its `config.json` says which model to build
and its newest checkpoint (or `--step`) gives the parameters. The prompt is encoded as UTF-8
bytes (the models' vocabulary is 256 bytes); sampling stops at byte 0, which marks the end of a
file in `declax_pysrc` (`--eos_id -1` never stops early). `--temperature 0` is greedy.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app, flags
from absl import logging as absl_logging

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


def load_config(workdir: str) -> Any:
  """The resolved config `scripts/train.py` wrote to `workdir/config.json`."""
  import ml_collections

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} a declax training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_model(workdir: str, step: int | None = None) -> tuple[Any, dict, Any, int]:
  """`(model, variables, config, step)` of a training run, restored from its checkpoint.

  Uses the training code's own pieces: `build_model`/`build_optimizer` to rebuild the train
  state's structure and `Checkpointer.restore` to read it (the stored tree is checked first).
  """
  import jax
  import jax.numpy as jnp

  from declax import sharding
  from declax.training.checkpoints import Checkpointer
  from declax.training.from_config import build_model, build_optimizer, to_dict
  from declax.training.state import make_init_fn

  config = load_config(workdir)
  model = build_model(config, mode="eval")
  tx, _ = build_optimizer(config)
  inputs = [jax.ShapeDtypeStruct((1, 1), jnp.int32)] * model.n_in  # params don't depend on it
  init_fn = make_init_fn(model, tx, inputs)
  mesh = sharding.mesh_from_config(to_dict(config.get("mesh")) or None)
  rules = sharding.rules_from_config(to_dict(config.get("sharding_rules")) or None)
  with sharding.mesh_context(mesh, rules):
    abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  target = sharding.abstract_with_shardings(
      abstract, sharding.state_shardings(abstract, mesh, rules))
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  try:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}")
    state, _ = checkpointer.restore(step, target)
  finally:
    checkpointer.close()
  return model, state.variables, config, step


def sample(workdir: str, prompt: str, max_length: int = 200, temperature: float = 0.8,
           top_k: int | None = None, num_samples: int = 1, seed: int = 0,
           eos_id: int | None = 0, step: int | None = None) -> list[str]:
  """Continuations of `prompt` (decoded as UTF-8, undecodable bytes replaced)."""
  import jax
  import numpy as np

  from declax.decoding import autoregressive_sample

  model, variables, config, _ = load_model(workdir, step)
  vocab = config.model.get("vocab_size", 256)
  if vocab != 256:
    raise ValueError(f"this script encodes text as bytes; the model's vocab_size is {vocab}")
  prefix = np.frombuffer(prompt.encode("utf-8"), np.uint8).astype(np.int32)
  prefix = np.tile(prefix[None], (num_samples, 1))
  max_len = config.model.get("max_len")  # Transformers: cache length
  if max_len is not None:
    max_length = min(max_length, max_len - prefix.shape[1])
    if max_length < 1:
      raise ValueError(f"the prompt ({prefix.shape[1]} bytes) fills the model's max_len "
                       f"{max_len}")
  tokens = autoregressive_sample(model, variables, prefix, max_length, temperature=temperature,
                                 top_k=top_k, rng=jax.random.PRNGKey(seed), eos_id=eos_id)
  texts = []
  for row in np.asarray(tokens):
    if eos_id is not None and (row == eos_id).any():
      row = row[: int(np.argmax(row == eos_id))]
    texts.append(prompt + bytes(row.astype(np.uint8).tolist()).decode("utf-8", "replace"))
  return texts


def _run(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every restore at INFO
  eos_id = None if _EOS_ID.value < 0 else _EOS_ID.value
  texts = sample(_WORKDIR.value, _PROMPT.value, _MAX_LENGTH.value, _TEMPERATURE.value,
                 _TOP_K.value, _NUM_SAMPLES.value, _SEED.value, eos_id, _STEP.value)
  for i, text in enumerate(texts):
    if len(texts) > 1:
      print(f"==== sample {i} ====")
    print(text)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(_run)
