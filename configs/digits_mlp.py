"""scikit-learn's 8x8 digits with an MLP: about 98% test accuracy in ~15 s on 2 CPU cores.

    python scripts/train.py --config configs/digits_mlp.py --workdir /tmp/declax/digits_mlp

(or `declax-train --config configs/digits_mlp.py --workdir ...`; override any value with e.g.
`--config.train.steps=300`).
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = dict(name="MLP", layer_widths=(256, 128), n_classes=10)

  config.data = dict(
      name="declax_digits", train_split="train", eval_split="test",
      eval_batch_size=120,             # 360 test images = 3 batches: the whole split
      n_eval_batches=placeholder(int),  # None: one full pass over eval_split
      normalize="standardize", builder_kwargs={},
  )

  config.optimizer = dict(name="adamw", weight_decay=1e-4, clip_norm=placeholder(float),
                          grad_accum_steps=1, kwargs={})
  config.schedule = dict(name="warmup_cosine", learning_rate=2e-3, warmup_steps=50,
                         decay_steps=placeholder(int), end_value=0.0)

  config.train = dict(
      steps=1000, batch_size=64, eval_every=500, checkpoint_every=500, log_every=100,
      keep_checkpoints=2, seed=0,
      loss="CrossEntropyLoss",                 # the MLP outputs log-probabilities
      metrics=("CrossEntropyLoss", "Accuracy"), metric_names=("loss", "accuracy"),
  )

  config.mesh = dict(data=-1, fsdp=1, tensor=1)
  config.sharding_rules = {}
  return config
