"""Fashion-MNIST with a small CNN (two conv/pool stages): about 91% test accuracy in ~3 minutes
on 2 CPU cores.

    python scripts/train.py --config configs/fashion_mnist_cnn.py --workdir /tmp/declax/fmnist_cnn

The data comes from the Debian package `dataset-fashion-mnist` (prepared on first use).
"""

import ml_collections

from declax.training import default_config


def get_config() -> ml_collections.ConfigDict:
  config = default_config.get_config()  # every key and its default
  config.model = dict(name="CNN", filters=(8, 16), kernel_size=(3, 3), hidden=(64,),
                      n_classes=10, dropout=0.0)
  config.data.update(name="declax_fashion_mnist", eval_split="test", eval_batch_size=1000,
                     normalize="standardize")
  config.optimizer.update(name="adamw", weight_decay=1e-4)
  config.schedule.update(name="warmup_cosine", learning_rate=2e-3, warmup_steps=200)
  config.train.update(
      steps=3000, batch_size=64, eval_every=1000, checkpoint_every=1000, log_every=250,
      keep_checkpoints=2, seed=0, loss="CrossEntropyLoss", metric_names=("loss", "accuracy"))
  return config
