"""The base training config: every key a config may set, with its default, in one place.

Every config in `configs/` starts from `get_config()` and overrides what differs (as Flax's
`examples/*/configs/default.py`); `declax.training.config_schema` derives the allowed keys from
it. `model`, `mesh` and `sharding_rules` are replaced whole by a config; the other sections are
merged key by key over these defaults. Keys in `REQUIRED` have no default.

```python
from declax.training import default_config

config = default_config.get_config()
config.model = dict(name='MLP', layer_widths=(64,), n_classes=10)
config.data.name = 'declax_digits'
config.optimizer.name = 'adamw'
config.schedule.learning_rate = 1e-3
config.train.update(steps=100, batch_size=32, seed=0, loss='CrossEntropyLoss')
```
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

__all__ = ["NONE_OK", "OPEN_SECTIONS", "REQUIRED", "SCALARS", "get_config"]

# Keys every config must set (no default makes sense for them).
REQUIRED = ("model.name", "data.name", "optimizer.name", "schedule.learning_rate",
            "train.steps", "train.batch_size", "train.seed", "train.loss")
# Keys with a default that may also be set to None (their comments say what None means); keys
# whose default is None may be None too.
NONE_OK = ("train.checkpoint_every", "train.keep_checkpoints")
# Top-level settings that are single values, not sections.
SCALARS = ("model_init", "dtype")
# Sections a config replaces whole: the model's own arguments, checked by its signature; the
# mesh and rules, checked by `declax.sharding` (a missing mesh axis is 1 there).
OPEN_SECTIONS = ("model", "mesh", "sharding_rules")


def get_config() -> ml_collections.ConfigDict:
  """A fresh base config (placeholders are None until a config sets them)."""
  config = ml_collections.ConfigDict()

  # Registry name (`declax.registry.get_model`) and the model's keyword arguments.
  config.model = dict(name=placeholder(str))
  # Start from trained weights (declax.training.model_init): a declax work directory or a Trax
  # model.pkl.gz; None: random initialisation. `model_load.skip`: regular expressions of
  # parameter paths that keep their random values (e.g. a new head, 'layers_5/.*').
  config.model_init = placeholder(str)
  config.model_load = dict(skip=(), step=placeholder(int))  # step None: the newest checkpoint

  config.data = dict(
      name=placeholder(str),          # a registered dataset or any TFDS name
      train_split="train",
      eval_split=placeholder(str),    # None: no evaluation
      eval_batch_size=placeholder(int),  # None: train.batch_size
      n_eval_batches=placeholder(int),   # None: one full pass over eval_split
      builder_kwargs={},              # the dataset builder's config (e.g. seq_len)
      # Options of `declax.data.make_pipeline` (None: its default).
      normalize=placeholder(str), lm_format=placeholder(str), data_dir=placeholder(str),
      in_memory=placeholder(bool),
  )

  config.optimizer = dict(
      name=placeholder(str),          # any optax optimizer: adam, adamw, lamb, lion, sgd, ...
      weight_decay=0.0,
      decay_all=False,                # decay vectors (biases, scales) too
      clip_norm=placeholder(float),   # None: no gradient clipping
      grad_accum_steps=1,
      ema_decay=placeholder(float),   # keep an EMA of the parameters (train.eval_on_ema)
      kwargs={},                      # passed to the optax factory (b1, b2, eps, ...)
  )

  config.schedule = dict(
      name="constant",                # see declax.training.optimizers.make_schedule
      learning_rate=placeholder(float),
      warmup_steps=0,
      decay_steps=placeholder(int),   # None: the run's optimizer updates
      end_value=0.0,
      # Reduce on plateau (optax.contrib.reduce_on_plateau), on top of the schedule: the
      # updates are scaled by `plateau_factor` after `plateau_patience` evaluations (or steps,
      # for 'train/loss') without improvement of `plateau_metric`. None: off.
      plateau_patience=placeholder(int),
      plateau_factor=0.1,
      plateau_metric="eval/loss",
      plateau_cooldown=0,
  )

  config.train = dict(
      steps=placeholder(int),         # total training steps (a resumed run stops there too)
      batch_size=placeholder(int),    # global, over all processes
      seed=placeholder(int),          # initialisation, dropout and shuffling
      loss=placeholder(str),          # a layer name (declax.registry.LAYERS)
      eval_every=placeholder(int),    # None: train.checkpoint_every, else 100
      checkpoint_every=100,           # None: only at the end of a run
      log_every=100,
      keep_checkpoints=3,             # None: keep all
      metrics=("CrossEntropyLoss", "Accuracy"),  # layer names, evaluated on eval_split
      metric_names=placeholder(tuple),           # None: the layer names
      permanent_checkpoint_every=placeholder(int),  # None: none kept for good
      checkpoint_low_metric=placeholder(str),   # keep the checkpoint with the lowest eval metric
      checkpoint_high_metric=placeholder(str),  # ... or the highest (e.g. 'eval/accuracy')
      early_stopping_patience=placeholder(int),  # evaluations without improvement; None: off
      early_stopping_metric="eval/loss",
      early_stopping_mode="min",
      eval_on_ema=True,               # with optimizer.ema_decay: evaluate the EMA parameters
      profile_steps=placeholder(tuple),  # (first, last): jax.profiler trace into tensorboard/
  )

  # Mixed precision, one key: the compute dtype of every layer ('float32', 'bfloat16' or
  # 'float16'); parameters stay float32, logits and losses float32 (docs/training.md).
  config.dtype = "float32"

  # -1: the rest of the devices. `dcn`: how many slices (TPU pod slices, GPU nodes) each axis
  # spans, all 1 on one slice (`--config.mesh.dcn.data=2`: data parallel over two slices).
  config.mesh = dict(data=-1, fsdp=1, tensor=1, dcn=dict(data=1, fsdp=1, tensor=1))
  config.sharding_rules = {}                     # logical name -> mesh axes (declax.sharding)
  return config
