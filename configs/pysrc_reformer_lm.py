"""A byte-level ReformerLM with a long context (2,048 bytes) on the bytes of Python's standard
library: LSH attention, reversible layers and a chunked feed-forward keep the memory small.

    python scripts/train.py --config configs/pysrc_reformer_lm.py --workdir /tmp/declax/reformer

The corpus is built from the running Python's own stdlib sources (prepared on first use); every
10th file is held out for validation. Axial position encodings also work here, e.g.
`--config.model.pos_type=axial` with `pos_axial_shape=(32, 64)` and `pos_d_axial_embs=(64, 64)`.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = dict(
      name="ReformerLM", vocab_size=256, d_model=128, d_ff=256, d_attention_key=32,
      d_attention_value=32, n_layers=4, n_heads=4, dropout=0.05, max_len=2048,
      attention_type="LSHSelfAttention",
      attention_kwargs=dict(chunk_len=128, n_chunks_before=1, n_hashes=2),  # 32 buckets
      pos_type=None,               # Trax's trained PositionalEncoding table ('axial' also works)
      ff_activation="FastGelu", ff_chunk_size=1024,
  )

  config.data = dict(
      name="declax_pysrc", train_split="train", eval_split="validation",
      eval_batch_size=4, n_eval_batches=16,
      lm_format="trax",                # inputs == targets: ReformerLM shifts right inside
      builder_kwargs=dict(seq_len=2048),
  )

  config.optimizer = dict(name="adamw", weight_decay=1e-2, clip_norm=1.0, grad_accum_steps=1,
                          kwargs=dict(b2=0.98))
  config.schedule = dict(name="warmup_cosine", learning_rate=2e-3, warmup_steps=100,
                         decay_steps=placeholder(int), end_value=2e-5)

  config.train = dict(
      steps=1000, batch_size=4, eval_every=500, checkpoint_every=500, log_every=50,
      keep_checkpoints=2, seed=0,
      loss="WeightedCategoryCrossEntropy",
      metrics=("WeightedCategoryCrossEntropy", "WeightedCategoryAccuracy", "BitsPerToken"),
      metric_names=("loss", "accuracy", "bits_per_byte"),
  )

  config.sample = dict(prompt="def ", max_length=100, temperature=0.6)

  config.mesh = dict(data=-1, fsdp=1, tensor=1)
  config.sharding_rules = {}
  return config
