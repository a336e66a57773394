"""From a config to the objects it describes: model, optimizer, data, tasks and the `Loop`.

The config's sections, keys and defaults are those of `declax.training.default_config` (see
there). `build_loop` and `train_and_evaluate` take any config and resolve it over them
(`resolve_config`); the `build_*` parts read every key, so give them a config made from the
base (as every config in `configs/` is) or a resolved one.

```python
config = importlib.import_module('configs.digits_mlp').get_config()
loop = train_and_evaluate(config, '/tmp/digits')
```
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from declax import registry, sharding
from declax.errors import DeclaxError, did_you_mean
from declax.layers import with_mode
from declax.layers.dtypes import COMPUTE_DTYPES
from declax.training.config_schema import ConfigError, resolve_config, to_dict
from declax.training.loop import Loop
from declax.training.optimizers import make_optimizer, make_schedule
from declax.training.tasks import EvalTask, TrainTask
from declax.training.workdir import WorkdirError

__all__ = ["build_eval_task", "build_loop", "build_model", "build_optimizer", "build_train_task",
           "flatten_config", "load_config", "local_batch_size", "model_input_specs",
           "restore_from_workdir", "sample_from_workdir", "to_dict", "train_and_evaluate",
           "write_config"]

log = logging.getLogger(__name__)

_DATA_OPTIONS = ("normalize", "lm_format", "data_dir", "in_memory")


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
  """`{'train.steps': 100, 'model.name': 'MLP', ...}` (for hparams)."""
  flat = {}
  for key, value in to_dict(config).items():
    if isinstance(value, Mapping):
      flat.update(flatten_config(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


# ---- Model and optimizer -------------------------------------------------------------------------


def build_model(config: ml_collections.ConfigDict, mode: str = "train") -> Any:
  """`registry.get_model(config.model.name, **other model keys)`, in `mode` (`tl.with_mode`).

  `config.dtype` (e.g. `'bfloat16'`) becomes the model's `dtype` argument unless
  `config.model.dtype` is set.
  """
  kwargs = to_dict(config.model)
  name = kwargs.pop("name")
  kwargs = _with_compute_dtype(name, kwargs, config.get("dtype", "float32"))
  model = registry.get_model(name, **kwargs)
  return model if mode == "train" else with_mode(model, mode)


def _takes_dtype(factory: Any) -> bool:
  try:
    parameters = inspect.signature(factory).parameters
  except (TypeError, ValueError):  # no signature to check: let the call decide
    return True
  return "dtype" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _with_compute_dtype(name: str, kwargs: dict, dtype: Any) -> dict:
  """The model's arguments with `dtype` from `config.dtype` (the mixed-precision policy), unless
  `config.model.dtype` sets it itself."""
  if dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"config.dtype={dtype!r} is not a compute dtype"
                      f"{did_you_mean(str(dtype), COMPUTE_DTYPES, prefix='')} (use one of "
                      f"{', '.join(COMPUTE_DTYPES)}; parameters stay float32 whatever it is)")
  if kwargs.get("dtype") is not None:
    return kwargs
  kwargs = {k: v for k, v in kwargs.items() if k != "dtype"}
  if dtype == "float32":
    return kwargs  # every model's default
  if not _takes_dtype(registry.MODELS.get(name)):
    raise ConfigError(f"config.dtype={dtype!r}, but model {name!r} takes no dtype argument; "
                      "add `dtype` to its signature (pass it to its layers) or use "
                      "config.dtype='float32'")
  return {**kwargs, "dtype": dtype}


def build_optimizer(config: ml_collections.ConfigDict
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer and its learning-rate schedule from `config.optimizer` / `config.schedule`."""
  s, o = config.schedule, config.optimizer
  decay_steps = s.decay_steps or max(config.train.steps // o.grad_accum_steps, 1)
  warmup_steps = s.warmup_steps
  if s.name in ("warmup_cosine", "warmup_linear") and warmup_steps >= decay_steps:
    # A short smoke run (`--config.train.steps=5`) of a config with a longer warmup.
    log.warning("schedule: warmup_steps=%d >= decay_steps=%d; warming up for %d steps instead",
                warmup_steps, decay_steps, decay_steps // 2)
    warmup_steps = decay_steps // 2
  schedule = make_schedule(s.name, learning_rate=s.learning_rate, warmup_steps=warmup_steps,
                           decay_steps=decay_steps, end_value=s.end_value)
  tx = make_optimizer(o.name, schedule, weight_decay=o.weight_decay, decay_all=o.decay_all,
                      clip_norm=o.clip_norm, grad_accum_steps=o.grad_accum_steps,
                      ema_decay=o.ema_decay, plateau_kwargs=plateau_kwargs(config),
                      **to_dict(o.kwargs))
  return tx, schedule


# ---- Data and tasks ------------------------------------------------------------------------------


def local_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch (an error if it does not split evenly)."""
  n = jax.process_count()
  if global_batch_size % n:
    raise sharding.ShardingError(f"config.train.batch_size={global_batch_size} is not divisible "
                                 f"by the {n} processes")
  return global_batch_size // n


def _pipeline(config: ml_collections.ConfigDict, split: str, batch_size: int, **kwargs: Any):
  from declax.data import make_pipeline

  data = config.data
  options = {k: data[k] for k in _DATA_OPTIONS if data[k] is not None}
  return make_pipeline(data.name, split, local_batch_size(batch_size), **options, **kwargs,
                       **to_dict(data.builder_kwargs))


def build_train_task(config: ml_collections.ConfigDict) -> TrainTask:
  """The training pipeline (shuffled, endless), loss and optimizer."""
  pipeline = _pipeline(config, config.data.train_split, config.train.batch_size,
                       seed=config.train.seed, shuffle=True)
  tx, schedule = build_optimizer(config)
  return TrainTask(pipeline, registry.get_layer(config.train.loss), tx, lr_schedule=schedule,
                   n_steps_per_checkpoint=config.train.checkpoint_every)


def build_eval_task(config: ml_collections.ConfigDict) -> EvalTask | None:
  """Evaluation on `config.data.eval_split` from its start each time (None if no eval split)."""
  data = config.data
  if not data.eval_split:
    return None
  pipeline = _pipeline(config, data.eval_split, data.eval_batch_size or config.train.batch_size,
                       shuffle=False)
  start = pipeline.get_state()

  def from_start():
    pipeline.set_state(start)
    return pipeline

  metrics = [registry.get_layer(name) for name in config.train.metrics]
  return EvalTask(from_start, metrics, metric_names=config.train.metric_names,
                  n_eval_batches=_eval_batches(data.n_eval_batches, pipeline.batches_per_epoch,
                                               data.eval_split))


def _eval_batches(wanted: int | None, per_epoch: int, split: str) -> int:
  """`config.data.n_eval_batches`, capped at one pass over the split (more would count
  examples twice), with a warning."""
  if wanted is None or wanted <= per_epoch:
    return wanted or per_epoch
  log.warning("config.data.n_eval_batches=%d is more than the %d batches of the %r split: "
              "evaluating on %d (one pass; more would count examples twice)", wanted,
              per_epoch, split, per_epoch)
  return per_epoch


# ---- Loop ----------------------------------------------------------------------------------------


def build_loop(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
               **loop_kwargs: Any) -> Loop:
  """The `Loop` a config describes, checkpointing into `workdir` (resuming if it holds one).

  The config is checked first (`resolve_config`: unknown, missing or unusable keys raise
  `ConfigError`); `loop_kwargs` override the `Loop` arguments it gives.
  """
  config = resolve_config(config)
  train, eval_task = config.train, build_eval_task(config)
  model, task = build_model(config), build_train_task(config)
  options = dict(
      eval_tasks=[eval_task] if eval_task is not None else [], output_dir=workdir,
      mesh=to_dict(config.mesh) or None, sharding_rules=to_dict(config.sharding_rules) or None,
      eval_every=train.eval_every, log_every=train.log_every,
      keep_checkpoints=train.keep_checkpoints, seed=train.seed, hparams=flatten_config(config),
      **loop_features(config, model, task))
  return Loop(model, task, **{**options, **loop_kwargs})


def plateau_kwargs(config: ml_collections.ConfigDict) -> dict | None:
  """`config.schedule.plateau_*` as `declax.training.optimizers.plateau` arguments, or None."""
  s = config.schedule
  if s.plateau_patience is None:
    return None
  return dict(metric=s.plateau_metric, patience=s.plateau_patience, factor=s.plateau_factor,
              cooldown=s.plateau_cooldown)


def loop_features(config: ml_collections.ConfigDict, model: Any, task: TrainTask) -> dict:
  """The `Loop` arguments of the optional training features a config turns on."""
  from declax.training import model_init
  from declax.training.callbacks import EarlyStopping, at_every

  train = config.train
  features = {k: train[k] for k in ("checkpoint_low_metric", "checkpoint_high_metric") if train[k]}
  if train.permanent_checkpoint_every:
    features["permanent_checkpoint_at"] = at_every(train.permanent_checkpoint_every)
  if train.early_stopping_patience:
    features["callbacks"] = [functools.partial(
        EarlyStopping, metric=train.early_stopping_metric, mode=train.early_stopping_mode,
        patience=train.early_stopping_patience)]
  if train.profile_steps:
    features["profile_steps"] = tuple(train.profile_steps)
  plateau = plateau_kwargs(config)
  if plateau and plateau["metric"] != "train/loss":
    features["plateau"] = plateau
  features["eval_on_ema"] = train.eval_on_ema
  if config.model_init:
    inputs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in task.sample_batch[: model.n_in]]
    features["init_params"] = model_init.loader(
        config.model_init, skip=tuple(config.model_load.skip), step=config.model_load.step,
        model=build_model(config, mode="eval"), inputs=inputs)
  return features


def write_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                 step: int | None = None) -> str:
  """Writes the resolved config to `workdir/config.json` (process 0); returns the path.

  A different `config.json` already there (an earlier run's, resumed at `step`) is kept as
  `config.<step>.json`, so the history of configs is not lost.
  """
  path = os.path.join(os.fspath(workdir), "config.json")
  if jax.process_index() == 0:
    os.makedirs(os.fspath(workdir), exist_ok=True)
    text = json.dumps(to_dict(config), indent=2, sort_keys=True, default=str) + "\n"
    if os.path.isfile(path):
      with open(path) as f:
        old = f.read()
      if old != text:
        kept = os.path.join(os.fspath(workdir), f"config.{step or 0}.json")
        os.replace(path, kept)
        log.info("The earlier config is kept as %s", kept)
    with open(path, "w") as f:
      f.write(text)
  return path


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
                       **loop_kwargs: Any) -> Loop:
  """Trains until step `config.train.steps` (resuming from `workdir`), evaluating as it goes.

  Returns the `Loop` (check `loop.preempted`: True if it stopped early on SIGTERM). A config
  with `experiment = 'module:function'` is run by that function instead (same arguments).
  """
  if config.get("experiment"):  # e.g. configs/translate_gettext.py
    module, _, function = config.experiment.partition(":")
    return getattr(importlib.import_module(module), function)(config, workdir, **loop_kwargs)
  config = resolve_config(config)
  loop = build_loop(config, workdir, **loop_kwargs)  # locks the workdir before writing to it
  try:
    if workdir is not None:
      write_config(config, workdir, loop.step)
    remaining = config.train.steps - loop.step
    if remaining > 0:
      loop.run(remaining)
    elif remaining < 0:
      log.warning("%s holds step %d, beyond config.train.steps=%d: nothing was trained. "
                  "Raise --config.train.steps to train further (or use a new workdir)",
                  workdir, loop.step, config.train.steps)
  finally:
    loop.close()
  return loop


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The resolved config a training run wrote to `workdir/config.json`."""
  path = os.path.join(os.fspath(workdir), "config.json")
  if not os.path.exists(path):
    raise WorkdirError(f"{path} not found: is {workdir} a declax training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def model_input_specs(config: ml_collections.ConfigDict) -> list[jax.ShapeDtypeStruct]:
  """Shapes and dtypes of one example of each batch item (batch size 1), from the config's data.

  Taken from the first batch of the eval split (else the train split), so an image model gets
  `float32[1,8,8,1]` and a language model `int32[1,seq_len]`: the shapes its parameters need.

  ```python
  model_input_specs(load_config('/tmp/declax/digits_mlp'))   # [ShapeDtypeStruct((1, 64), ...), ...]
  ```
  """
  config = resolve_config(config)
  split = config.data.eval_split or config.data.train_split
  batch = next(iter(_pipeline(config, split, jax.process_count(), shuffle=False)))
  batch = [np.asarray(x) for x in (batch if isinstance(batch, (tuple, list)) else (batch,))]
  for i, x in enumerate(batch):
    if x.dtype.kind not in "biuf":  # e.g. the raw text of a dataset a tokenizer reads first
      raise WorkdirError(f"config.data ({config.data.name}) item {i} is {x.dtype}, not a model "
                         "input: its model's input shapes cannot come from this data")
  return [jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype) for x in batch]


def restore_from_workdir(workdir: str | os.PathLike, step: int | None = None,
                         mode: str = "eval") -> tuple[Any, dict, ml_collections.ConfigDict, int]:
  """`(model, variables, config, step)` of a training run, from its newest checkpoint (or `step`).

  The model is rebuilt in `mode` from the workdir's config, with input shapes from its data
  (`model_input_specs`); the stored tree is checked against it before anything is read
  (`CheckpointMismatchError` lists differing paths). The variables are plain arrays.

  ```python
  model, variables, config, step = restore_from_workdir('/tmp/declax/pysrc_lm')
  logits = model.apply(variables, tokens)
  ```
  """
  from declax.layers import LayerError
  from declax.training.checkpoints import Checkpointer
  from declax.training.state import create_or_restore_state

  config = resolve_config(load_config(workdir))
  model = build_model(config, mode=mode)
  mesh = sharding.mesh_from_config(to_dict(config.mesh) or None)
  rules = sharding.rules_from_config(to_dict(config.sharding_rules) or None)
  checkpointer = Checkpointer(os.path.join(os.fspath(workdir), "checkpoints"), async_save=False)
  try:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise WorkdirError(f"no checkpoint in {checkpointer.directory}")
    first_error = None
    for inputs in _input_candidates(config, model):
      try:
        restored = create_or_restore_state(model, build_optimizer(config)[0], inputs, mesh,
                                           rules, checkpointer=checkpointer, step=step)
        break
      except LayerError as error:  # the model refused these shapes while tracing its init
        first_error = first_error or error
    else:
      raise first_error
  finally:
    checkpointer.close()
  return model, restored.state.variables, config, step


def _input_candidates(config: ml_collections.ConfigDict, model: Any):
  """Input shapes to trace the model's init with: the data's first, then one token per input
  (for a workdir whose Loop was fed other data than its config's: token models' parameters do
  not depend on the sequence length)."""
  try:
    if not config.get("experiment"):  # an experiment feeds its model its own data
      yield model_input_specs(config)[: model.n_in]
  except DeclaxError as error:  # e.g. the data is not available here: shapes are guessed
    log.warning("restore: input shapes from the data failed (%s); trying int32[1,1]", error)
  yield [jax.ShapeDtypeStruct((1, 1), jnp.int32)] * model.n_in


def sample_from_workdir(workdir: str | os.PathLike, prompt: str, max_length: int = 200,
                        temperature: float = 0.8, top_k: int | None = None,
                        num_samples: int = 1, seed: int = 0, eos_id: int | None | str = "auto",
                        step: int | None = None, beam_size: int = 4) -> list[str]:
  """Continuations of `prompt` by a language model's checkpoint in `workdir`, or its
  translations by an encoder-decoder's, through the workdir's own tokenizer (bytes if it has
  none); see `declax.workdir_decoding.decode_prompt`. A tokenizer whose vocabulary does not
  match the checkpoint's raises `VocabularyMismatchError`.
  """
  from declax import workdir_decoding

  model, variables, _, _ = restore_from_workdir(workdir, step)
  tokenizer = workdir_decoding.workdir_tokenizer(workdir)
  workdir_decoding.check_vocabulary(tokenizer, workdir_decoding.model_vocab_size(model, variables),
                                    os.fspath(workdir))
  return workdir_decoding.decode_prompt(
      model, variables, tokenizer, prompt, max_length=max_length, temperature=temperature,
      top_k=top_k, num_samples=num_samples, seed=seed, eos_id=eos_id, beam_size=beam_size)
