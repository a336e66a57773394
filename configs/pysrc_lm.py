"""A byte-level TransformerLM on the bytes of Python's standard library: about 2.4 bits/byte on
held-out files in ~3 minutes on 2 CPU cores.

    python scripts/train.py --config configs/pysrc_lm.py --workdir /tmp/declax/pysrc_lm

Variants (big_vision's `--config path:arg`): `--config configs/pysrc_lm.py:small` is a
one-layer, 64-wide model for 200 steps (a smoke run of well under a minute).

The corpus is built from the running Python's own stdlib sources (prepared on first use); every
10th file is held out for validation.
"""

import ml_collections

from declax.training import default_config

VARIANTS = ("small",)


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The config; `variant` (`--config configs/pysrc_lm.py:small`) picks a smaller one."""
  if variant not in (None, "", *VARIANTS):
    from declax.errors import did_you_mean
    from declax.training.config_schema import ConfigError

    raise ConfigError(f"no variant {variant!r}"
                      f"{did_you_mean(variant, VARIANTS)} (variants: {', '.join(VARIANTS)})")
  config = default_config.get_config()  # every key and its default
  config.model = dict(name="TransformerLM", vocab_size=256, d_model=128, d_ff=512, n_layers=2,
                      n_heads=4, max_len=128, dropout=0.0)
  config.data.update(
      name="declax_pysrc", eval_split="validation", eval_batch_size=32,
      n_eval_batches=64,               # 64 x 32 windows of 128 bytes = 262k held-out bytes
      lm_format="trax",                # inputs == targets: TransformerLM shifts right inside
      builder_kwargs=dict(seq_len=128))
  config.optimizer.update(name="adamw", weight_decay=1e-2, clip_norm=1.0, kwargs=dict(b2=0.98))
  config.schedule.update(name="warmup_cosine", learning_rate=3e-3, warmup_steps=100,
                         end_value=3e-5)
  config.train.update(
      steps=800, batch_size=32, eval_every=400, checkpoint_every=400, keep_checkpoints=2,
      seed=0, loss="WeightedCategoryCrossEntropy",  # the model outputs logits; weights mask padding
      metrics=("WeightedCategoryCrossEntropy", "WeightedCategoryAccuracy", "BitsPerToken"),
      metric_names=("loss", "accuracy", "bits_per_byte"))
  config.sample = dict(prompt="def ", max_length=100, temperature=0.6)  # printed at the end
  if variant == "small":
    config.model.update(d_model=64, d_ff=256, n_layers=1, n_heads=2)
    config.data.n_eval_batches = 8
    config.schedule.warmup_steps = 20
    config.train.update(steps=200, eval_every=200, checkpoint_every=200, log_every=50)
  return config
