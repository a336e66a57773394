"""Fashion-MNIST with a small CNN (two conv/pool stages): about 91% test accuracy in ~3 minutes
on 2 CPU cores.

    python scripts/train.py --config configs/fashion_mnist_cnn.py --workdir /tmp/declax/fmnist_cnn

The data comes from the Debian package `dataset-fashion-mnist` (prepared on first use).
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = dict(name="CNN", filters=(8, 16), kernel_size=(3, 3), hidden=(64,),
                      n_classes=10, dropout=0.0)

  config.data = dict(
      name="declax_fashion_mnist", train_split="train", eval_split="test",
      eval_batch_size=1000, n_eval_batches=placeholder(int),
      normalize="standardize", builder_kwargs={},
  )

  config.optimizer = dict(name="adamw", weight_decay=1e-4, clip_norm=placeholder(float),
                          grad_accum_steps=1, kwargs={})
  config.schedule = dict(name="warmup_cosine", learning_rate=2e-3, warmup_steps=200,
                         decay_steps=placeholder(int), end_value=0.0)

  config.train = dict(
      steps=3000, batch_size=64, eval_every=1000, checkpoint_every=1000, log_every=250,
      keep_checkpoints=2, seed=0,
      loss="CrossEntropyLoss",
      metrics=("CrossEntropyLoss", "Accuracy"), metric_names=("loss", "accuracy"),
  )

  config.mesh = dict(data=-1, fsdp=1, tensor=1)
  config.sharding_rules = {}
  return config
