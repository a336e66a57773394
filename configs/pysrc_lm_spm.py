"""The stdlib-source TransformerLM of `configs/pysrc_lm.py` on a SentencePiece vocabulary (2,000
pieces trained on the training files), still scored in bits per byte (`eval/bits_per_byte`) so
that it compares with the byte-level model.

    declax-train --config configs/pysrc_lm_spm.py --workdir /tmp/declax/pysrc_lm_spm

The run is driven by `declax.lm_spm.train_spm_lm` (`config.experiment`); the tokenizer is kept
in the work directory, so `scripts/sample.py --workdir ...` decodes its samples.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from declax.training import default_config


def get_config() -> ml_collections.ConfigDict:
  config = default_config.get_config()  # every key and its default
  config.experiment = "declax.lm_spm:train_spm_lm"

  # vocab_size: the SentencePiece model's (set by the run); max_len: tokens per window.
  config.model = dict(name="TransformerLM", vocab_size=placeholder(int), d_model=128, d_ff=512,
                      n_layers=2, n_heads=4, max_len=128, dropout=0.0)
  config.data.update(name="declax_pysrc")   # the same files and split as the byte LM

  config.spm = dict(vocab_size=2000, model_type="unigram", max_lines=40_000,
                    n_eval_windows=1024, eval_batch_size=32)

  config.optimizer.update(name="adamw", weight_decay=1e-2, clip_norm=1.0, kwargs=dict(b2=0.98))
  config.schedule.update(name="warmup_cosine", learning_rate=3e-3, warmup_steps=100,
                         end_value=3e-5)
  config.train.update(
      steps=800, batch_size=32, eval_every=400, checkpoint_every=400, log_every=100,
      keep_checkpoints=2, seed=0, loss="WeightedCategoryCrossEntropy",
      metrics=("WeightedCategoryCrossEntropy", "WeightedCategoryAccuracy"),
      metric_names=("loss", "accuracy"))
  config.sample = dict(prompt="def ", max_length=60, temperature=0.6)  # printed at the end
  return config
