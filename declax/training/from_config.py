"""From a config to the objects it describes: model, optimizer, data, tasks and the `Loop`.

The config sections (see `configs/*.py`):

- `model`: `name` (registry name) and the model's keyword arguments.
- `data`: `name` (dataset), `train_split`, `eval_split` (None: no evaluation),
  `eval_batch_size`, `n_eval_batches` (None: one full pass), `builder_kwargs`, and optionally
  `normalize` / `lm_format` / `data_dir` (see `declax.data.make_pipeline`).
- `optimizer`: `name`, `weight_decay`, `clip_norm`, `grad_accum_steps`, `kwargs`.
- `schedule`: `name`, `learning_rate`, `warmup_steps`, `decay_steps` (None: the run's optimizer
  updates), `end_value`.
- `train`: `steps`, `batch_size` (global), `eval_every`, `checkpoint_every`, `log_every`,
  `keep_checkpoints`, `seed`, `loss`, `metrics`, `metric_names`.
- `mesh`, `sharding_rules`: see `declax.sharding`.

```python
config = importlib.import_module('configs.digits_mlp').get_config()
loop = train_and_evaluate(config, '/tmp/digits')
```
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import optax

from declax import registry
from declax.training.config_schema import validate_config
from declax.training.loop import Loop
from declax.training.optimizers import make_optimizer, make_schedule
from declax.training.tasks import EvalTask, TrainTask

__all__ = ["build_eval_task", "build_loop", "build_model", "build_optimizer", "build_train_task",
           "flatten_config", "load_config", "local_batch_size", "restore_from_workdir",
           "sample_from_workdir", "to_dict", "train_and_evaluate", "write_config"]

log = logging.getLogger(__name__)

_DATA_OPTIONS = ("normalize", "lm_format", "data_dir", "in_memory")


def to_dict(value: Any) -> Any:
  """A ConfigDict (or plain value) as plain dicts, lists turned into tuples."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {k: to_dict(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(to_dict(v) for v in value)
  return value


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
  """`{'train.steps': 100, 'model.name': 'MLP', ...}` (for hparams)."""
  flat = {}
  for key, value in to_dict(config).items():
    if isinstance(value, Mapping):
      flat.update(flatten_config(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


# ------------------------------------------------------------------------------------------------
# Model and optimizer
# ------------------------------------------------------------------------------------------------


def build_model(config: ml_collections.ConfigDict, mode: str = "train") -> Any:
  """`registry.get_model(config.model.name, **other model keys)`, in `mode` if it takes one."""
  kwargs = to_dict(config.model)
  name = kwargs.pop("name")
  try:
    factory_params = inspect.signature(_model_factory(name)).parameters
  except (TypeError, ValueError):
    factory_params = {}
  if "mode" in factory_params:
    kwargs["mode"] = mode
  return registry.get_model(name, **kwargs)


def _model_factory(name: str) -> Any:
  if name in registry._MODELS:  # noqa: SLF001 (same package)
    return registry._MODELS[name]
  import declax.models

  return getattr(declax.models, name, None)


def _optimizer_updates(config: ml_collections.ConfigDict) -> int:
  accum = int(config.optimizer.get("grad_accum_steps", 1) or 1)
  return max(int(config.train.steps) // accum, 1)


def build_optimizer(config: ml_collections.ConfigDict
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer and its learning-rate schedule from `config.optimizer` / `config.schedule`."""
  s = to_dict(config.schedule)
  decay_steps = s.get("decay_steps") or _optimizer_updates(config)
  warmup_steps = s.get("warmup_steps", 0) or 0
  if s.get("name") in ("warmup_cosine", "warmup_linear") and warmup_steps >= decay_steps:
    # A short smoke run (`--config.train.steps=5`) of a config with a longer warmup.
    log.warning("schedule: warmup_steps=%d >= decay_steps=%d; warming up for %d steps instead",
                warmup_steps, decay_steps, decay_steps // 2)
    warmup_steps = decay_steps // 2
  schedule = make_schedule(s.get("name", "constant"), learning_rate=s["learning_rate"],
                           warmup_steps=warmup_steps, decay_steps=decay_steps,
                           end_value=s.get("end_value", 0.0))
  o = to_dict(config.optimizer)
  tx = make_optimizer(o["name"], schedule, weight_decay=o.get("weight_decay", 0.0) or 0.0,
                      decay_all=o.get("decay_all", False), clip_norm=o.get("clip_norm"),
                      grad_accum_steps=o.get("grad_accum_steps", 1) or 1,
                      **dict(o.get("kwargs") or {}))
  return tx, schedule


# ------------------------------------------------------------------------------------------------
# Data and tasks
# ------------------------------------------------------------------------------------------------


def local_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch (an error if it does not split evenly)."""
  n = jax.process_count()
  if global_batch_size % n:
    raise ValueError(f"config.train.batch_size={global_batch_size} is not divisible by the "
                     f"{n} processes")
  return global_batch_size // n


def _data_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  data = to_dict(config.data)
  kwargs = {k: data[k] for k in _DATA_OPTIONS if data.get(k) is not None}
  kwargs.update(data.get("builder_kwargs") or {})
  return kwargs


def build_train_task(config: ml_collections.ConfigDict) -> TrainTask:
  """The training pipeline (shuffled, endless), loss and optimizer."""
  from declax.data import make_pipeline

  pipeline = make_pipeline(config.data.name, config.data.get("train_split", "train"),
                           local_batch_size(config.train.batch_size), seed=config.train.seed,
                           shuffle=True, **_data_kwargs(config))
  tx, schedule = build_optimizer(config)
  loss = registry.get_layer(config.train.loss)
  return TrainTask(pipeline, loss, tx, lr_schedule=schedule,
                   n_steps_per_checkpoint=config.train.checkpoint_every)


def build_eval_task(config: ml_collections.ConfigDict) -> EvalTask | None:
  """Evaluation on `config.data.eval_split` from its start each time (None if no eval split)."""
  from declax.data import make_pipeline

  split = config.data.get("eval_split")
  if not split:
    return None
  batch_size = local_batch_size(config.data.get("eval_batch_size") or config.train.batch_size)
  pipeline = make_pipeline(config.data.name, split, batch_size, shuffle=False,
                           **_data_kwargs(config))
  start = pipeline.get_state()

  def from_start():
    pipeline.set_state(start)
    return pipeline

  n_batches = config.data.get("n_eval_batches") or pipeline.batches_per_epoch
  metrics = [registry.get_layer(name) for name in config.train.metrics]
  names = config.train.get("metric_names") or None
  return EvalTask(from_start, metrics, metric_names=names, n_eval_batches=n_batches)


# ------------------------------------------------------------------------------------------------
# Loop
# ------------------------------------------------------------------------------------------------


def build_loop(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
               **loop_kwargs: Any) -> Loop:
  """The `Loop` a config describes, checkpointing into `workdir` (resuming if it holds one).

  The config is checked first (`validate_config`: unknown, missing or unusable keys raise
  `ConfigError`).
  """
  validate_config(config)
  train = config.train
  eval_task = build_eval_task(config)
  options = dict(
      eval_tasks=[eval_task] if eval_task is not None else [],
      output_dir=workdir,
      mesh=to_dict(config.get("mesh")) or None,
      sharding_rules=to_dict(config.get("sharding_rules")) or None,
      eval_every=train.get("eval_every"),
      log_every=train.get("log_every", 100),
      keep_checkpoints=train.get("keep_checkpoints", 3),
      seed=train.seed,
      hparams=flatten_config(config),
  )
  options.update(loop_kwargs)
  return Loop(build_model(config), build_train_task(config), **options)


def write_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
  """Writes the resolved config to `workdir/config.json` (process 0); returns the path."""
  path = os.path.join(os.fspath(workdir), "config.json")
  if jax.process_index() == 0:
    os.makedirs(os.fspath(workdir), exist_ok=True)
    with open(path, "w") as f:
      json.dump(to_dict(config), f, indent=2, sort_keys=True, default=str)
      f.write("\n")
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
  loop = build_loop(config, workdir, **loop_kwargs)  # locks the workdir before writing to it
  try:
    if workdir is not None:
      write_config(config, workdir)
    remaining = int(config.train.steps) - loop.step
    if remaining > 0:
      loop.run(remaining)
  finally:
    loop.close()
  return loop


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The resolved config a training run wrote to `workdir/config.json`."""
  path = os.path.join(os.fspath(workdir), "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} a declax training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_from_workdir(workdir: str | os.PathLike, step: int | None = None,
                         mode: str = "eval") -> tuple[Any, dict, ml_collections.ConfigDict, int]:
  """`(model, variables, config, step)` of a training run, from its newest checkpoint (or `step`).

  The model is rebuilt in `mode` from the workdir's config; the stored tree is checked against
  it before anything is read (`CheckpointMismatchError` lists differing paths).

  ```python
  model, variables, config, step = restore_from_workdir('/tmp/declax/pysrc_lm')
  logits = model.apply(variables, tokens)
  ```
  """
  import jax.numpy as jnp

  from declax import sharding
  from declax.training.checkpoints import Checkpointer
  from declax.training.state import make_init_fn

  config = load_config(workdir)
  model = build_model(config, mode=mode)
  tx, _ = build_optimizer(config)
  inputs = [jax.ShapeDtypeStruct((1, 1), jnp.int32)] * model.n_in  # params don't depend on it
  init_fn = make_init_fn(model, tx, inputs)
  mesh = sharding.mesh_from_config(to_dict(config.get("mesh")) or None)
  rules = sharding.rules_from_config(to_dict(config.get("sharding_rules")) or None)
  with sharding.mesh_context(mesh, rules):
    abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  target = sharding.abstract_with_shardings(
      abstract, sharding.state_shardings(abstract, mesh, rules))
  checkpointer = Checkpointer(os.path.join(os.fspath(workdir), "checkpoints"), async_save=False)
  try:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}")
    state, _ = checkpointer.restore(step, target)
  finally:
    checkpointer.close()
  return model, state.variables, config, step


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
