"""scikit-learn's 8x8 digits with an MLP: about 98% test accuracy in ~15 s on 2 CPU cores.

    python scripts/train.py --config configs/digits_mlp.py --workdir /tmp/declax/digits_mlp

(or `declax-train --config configs/digits_mlp.py --workdir ...`; override any value with e.g.
`--config.train.steps=300`).
"""

import ml_collections

from declax.training import default_config


def get_config() -> ml_collections.ConfigDict:
  config = default_config.get_config()  # every key and its default
  config.model = dict(name="MLP", layer_widths=(256, 128), n_classes=10)
  config.data.update(name="declax_digits", eval_split="test", normalize="standardize",
                     eval_batch_size=120)  # 360 test images = 3 batches: the whole split
  config.optimizer.update(name="adamw", weight_decay=1e-4)
  config.schedule.update(name="warmup_cosine", learning_rate=2e-3, warmup_steps=50)
  config.train.update(
      steps=1000, batch_size=64, eval_every=500, checkpoint_every=500, keep_checkpoints=2,
      seed=0, loss="CrossEntropyLoss",         # the MLP outputs log-probabilities
      metric_names=("loss", "accuracy"))
  return config
