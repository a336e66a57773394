"""Trax's copy task on a tiny ReformerLM with LSH attention: learn to copy a random word,
`0 w 0 w`, with the loss on the copied half only (the first half is random).

    python scripts/train.py --config configs/reformer_copy.py --workdir /tmp/declax/reformer_copy

`accuracy` is on the copied half (the weights are 1 there only); it passes 99% within the run.
"""

import ml_collections

import declax.data.builders.copy_task  # noqa: F401  (registers declax_copy)


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = dict(
      name="ReformerLM", vocab_size=32, d_model=64, d_ff=128, d_attention_key=32,
      d_attention_value=32, n_layers=2, n_heads=2, dropout=0.0, max_len=64,
      attention_type="LSHSelfAttention",
      # LSH: 4 hash rounds into 4 buckets of the 64 positions, sorted chunks of 16 that also
      # see the chunk before.
      attention_kwargs=dict(chunk_len=16, n_chunks_before=1, n_hashes=4, n_buckets=4),
      ff_activation="FastGelu", ff_chunk_size=0,
  )

  config.data = dict(
      name="declax_copy", train_split="train", eval_split="test",
      eval_batch_size=50, n_eval_batches=4,
      builder_kwargs=dict(vocab_size=32, length=31),   # 64 tokens: 0 w 0 w
  )

  config.optimizer = dict(name="adam", clip_norm=1.0)
  config.schedule = dict(name="warmup_cosine", learning_rate=1e-3, warmup_steps=100,
                         decay_steps=1500, end_value=1e-5)

  config.train = dict(
      steps=1500, batch_size=32, eval_every=500, checkpoint_every=1500, log_every=100,
      keep_checkpoints=1, seed=0,
      loss="WeightedCategoryCrossEntropy",
      metrics=("WeightedCategoryCrossEntropy", "WeightedCategoryAccuracy"),
      metric_names=("loss", "accuracy"),
  )

  config.mesh = dict(data=-1, fsdp=1, tensor=1)
  config.sharding_rules = {}
  return config
