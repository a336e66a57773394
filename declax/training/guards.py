"""Checks a `Loop` makes before it spends compute, and before it writes a checkpoint.

A run should fail at construction, not after hours of training, on what can be known up front:
an eval batch that does not split over the mesh, an evaluation step that does not trace, an
eval model still in `'train'` mode, a `keep_checkpoints` of 0, a `run(2.5)`. And a checkpoint
must only hold a state worth resuming from: `check_state` refuses to save parameters or
optimizer state holding NaN/inf, or whose loss on the last batch is no longer finite (a huge
learning rate makes step k's update blow up step k+1's loss, while step k's loss was fine).

```python
check_n_steps(10)                     # ConfigError for 2.5, -3, True
check_keep_checkpoints(3)             # ConfigError for 0
```
"""

from __future__ import annotations

import dataclasses
import numbers
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax import sharding
from declax.errors import DeclaxError
from declax.training.config_schema import ConfigError
from declax.training.id_checks import class_limit
from declax.training.reporting import NonFiniteLossError
from declax.training.step import run_model, run_on_stack

__all__ = ["LoopClosedError", "NonFiniteStateError", "WorkdirInUseError", "check_eval_model",
           "check_eval_setup", "check_keep_checkpoints", "check_labels", "check_n_steps",
           "claim_workdir", "make_state_check"]


class LoopClosedError(DeclaxError, RuntimeError):
  """`Loop.run` (or a save) after `Loop.close()`: the workdir lock is released."""


class WorkdirInUseError(DeclaxError, RuntimeError):
  """A second live `Loop` on a work directory in the same process."""


class NonFiniteStateError(NonFiniteLossError):
  """The train state to be saved holds NaN/inf, or its loss on the last batch is not finite;
  nothing was saved (the previous checkpoint stays the last good one)."""

  def __init__(self, step: int, what: str, last_checkpoint: int | None = None,
               directory: str | None = None):
    self.step, self.value, self.last_checkpoint = step, float("nan"), last_checkpoint
    self.what, self.quantity = what, "state"
    where = (f"; the last good checkpoint is step {last_checkpoint} in {directory}"
             if last_checkpoint is not None else "; no checkpoint was saved")
    FloatingPointError.__init__(
        self, f"the train state after step {step} is unusable ({what}): not saved{where}. "
        "Lower the learning rate, clip gradients (config.optimizer.clip_norm) or check the "
        "data, then rerun (it resumes from the last good checkpoint).")

  def __reduce__(self):
    return (type(self), (self.step, self.what, self.last_checkpoint))


# ---- Arguments -----------------------------------------------------------------------------------


def check_n_steps(n_steps: Any) -> int:
  """`n_steps` as an int, or `ConfigError` for a fraction, a negative number or a bool."""
  if (isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral)
      or n_steps < 0):
    raise ConfigError(f"Loop.run(n_steps): n_steps must be a whole number >= 0, got "
                      f"{n_steps!r}; e.g. loop.run(100)")
  return int(n_steps)


def check_keep_checkpoints(keep: Any) -> None:
  """`ConfigError` unless `keep` is None (keep all) or an integer >= 1."""
  if keep is None:
    return
  if isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or keep < 1:
    raise ConfigError(f"keep_checkpoints must be an integer >= 1 or None (keep all), got "
                      f"{keep!r}: with 0 every checkpoint would be deleted right after it "
                      "is written")


# ---- One live Loop per work directory in a process -----------------------------------------------

_LIVE: dict[str, weakref.ref] = {}
_LIVE_LOCK = threading.Lock()


def claim_workdir(directory: str, loop: Any) -> Callable[[], None]:
  """Registers `loop` as the live user of `directory`; returns the function that frees it.

  A second live `Loop` on the same directory would write a second history of checkpoints into
  it (each keeping "the newest N" by its own count): `WorkdirInUseError`.
  """
  with _LIVE_LOCK:
    other = _LIVE.get(directory)
    other = other() if other is not None else None
    if other is not None and getattr(other, "_constructed", False) and not other.closed:
      raise WorkdirInUseError(
          f"output directory {directory} is used by another live Loop in this process: two "
          "loops would mix two histories of checkpoints there. Call close() on the other "
          "Loop first (or use `with Loop(...) as loop:`), or use another output directory.")
    mine = _LIVE[directory] = weakref.ref(loop)  # weak: the finalizer must not keep it alive

  def release() -> None:
    with _LIVE_LOCK:
      if _LIVE.get(directory) is mine:
        del _LIVE[directory]

  return release


# ---- Evaluation, checked before training ---------------------------------------------------------


def _layers(layer: nn.Module, seen: set[int] | None = None):
  """Every layer in a tree (each once)."""
  seen = set() if seen is None else seen
  if id(layer) in seen:
    return
  seen.add(id(layer))
  yield layer
  for field in dataclasses.fields(layer):
    if field.name in ("parent", "name"):
      continue
    value = getattr(layer, field.name, None)
    values = value if isinstance(value, (tuple, list)) else [value]
    for v in values:
      if isinstance(v, nn.Module):
        yield from _layers(v, seen)


def check_eval_model(eval_model: nn.Module) -> None:
  """`ConfigError` if a layer of `eval_model` is in `'train'` mode (Dropout would drop units,
  BatchNorm would use the eval batch's statistics)."""
  in_train = [type(layer).__name__ for layer in _layers(eval_model)
              if getattr(layer, "mode", None) == "train"]
  if in_train:
    names = ", ".join(sorted(set(in_train)))
    raise ConfigError(f"eval_model has layers in 'train' mode ({names}): evaluation would "
                      "drop units / use batch statistics. Pass tl.with_mode(model, 'eval') "
                      "(or leave eval_model=None for that default)")


def check_eval_setup(eval_tasks: Sequence[Any], eval_steps: Sequence[Any], state: Any,
                     mesh: jax.sharding.Mesh, rules: Any) -> None:
  """Checks each eval task's batch against the mesh and traces its eval step on shapes only
  (`jax.eval_shape`), so a bad eval setup fails before training instead of after it."""
  ways = int(np.prod([mesh.shape.get(a, 1) for a in sharding.BATCH_AXES]))
  for index, (task, eval_step) in enumerate(zip(eval_tasks, eval_steps, strict=True)):
    batch = [np.asarray(x) for x in task.sample_batch]
    size = batch[0].shape[0] * jax.process_count() if batch and batch[0].ndim else 0
    if size % ways:
      raise sharding.ShardingError(
          f"the eval batch size (config.data.eval_batch_size) is {size}, not divisible by the "
          f"mesh's data*fsdp = {ways} (mesh {dict(mesh.shape)}); checked before training. "
          "Use a multiple of it")
    specs = tuple(jax.ShapeDtypeStruct((x.shape[0] * jax.process_count(), *x.shape[1:]),
                                       x.dtype) for x in batch)
    try:
      with sharding.mesh_context(mesh, rules):
        jax.eval_shape(eval_step, state, specs)
    except Exception as error:  # noqa: BLE001 - any failure here would end the run later
      first = (str(error).strip().splitlines() or [""])[0][:400]
      raise ConfigError(
          f"eval task {index} cannot run on the eval model ({type(error).__name__}: {first}); "
          "checked before training so no work is lost. Fix its metrics (parameter-free "
          "layers taking model outputs + targets), its data or the eval_model") from error


# ---- Labels against the classes ------------------------------------------------------------------


def check_labels(model: nn.Module, variables: Any, batch: Sequence[Any], what: str) -> None:
  """`ConfigError` if the integer targets of `batch` (the item after the model's inputs) fall
  outside the model's output classes (its last axis; 0/1 for a single output): labels >=
  n_classes, token ids >= vocab_size. Only the first batch is looked at here, when the `Loop`
  is built; the train and eval steps check every batch (`declax.training.id_checks`)."""
  batch = [np.asarray(x) for x in batch]
  if len(batch) <= model.n_in or batch[model.n_in].dtype.kind not in "iu":
    return
  targets = batch[model.n_in]
  specs = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in batch)
  try:
    output = jax.eval_shape(lambda v, b: run_model(model, v, b)[0][0], variables, specs)
  except Exception:  # noqa: BLE001 - other checks (and the first step) name such failures
    return
  limit = class_limit(output, targets)
  if limit is None or targets.size == 0:
    return
  high = int(targets.max())
  if high >= limit:  # (negative labels may be a dataset's "ignore" marker: left alone)
    classes = (f"the model's {limit} classes" if output.shape[-1] > 1
               else "the model's single output, a binary classifier")
    raise ConfigError(
        f"the {what} data's targets hold {high}, outside {classes} "
        f"(outputs {output.dtype}{list(output.shape)}; labels and token ids must be in [0, "
        f"{limit})): set config.model.n_classes / vocab_size to at least {high + 1}, or "
        "check the data's labels")


# ---- The state a checkpoint may hold -------------------------------------------------------------


# Leaves that are infinite by design: reduce-on-plateau's best value starts at +inf.
_INFINITE_BY_DESIGN = frozenset({"best_value"})


def _all_finite(tree: Any) -> jax.Array:
  leaves = [x for path, x in jax.tree_util.tree_leaves_with_path(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
            and getattr(path[-1] if path else None, "name", None) not in _INFINITE_BY_DESIGN]
  if not leaves:
    return jnp.asarray(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def make_state_check(model: nn.Module | None, loss_layer: nn.Module | None,
                     rng_streams: Sequence[str]) -> Callable[[Any, Any], str | None]:
  """`check(state, batch) -> None | what is wrong`: the state's arrays are finite and (with a
  model, a loss layer and a batch) the loss the next step would compute on `batch` is finite.

  One jitted call, run only before a save.
  """
  @jax.jit
  def finite_leaves(state):
    return _all_finite((state.params, state.opt_state, state.model_state, state.heads))

  @jax.jit
  def next_loss(state, batch):
    step_rng = jax.random.fold_in(state.rng, state.step)
    rngs = dict(zip(rng_streams, jax.random.split(step_rng, len(rng_streams)), strict=True))
    mutable = list(state.model_state) or False
    stack, _ = run_model(model, {"params": state.params, **state.model_state}, batch,
                         rngs=rngs, mutable=mutable)
    return run_on_stack(loss_layer, stack)

  def check(state: Any, batch: Any) -> str | None:
    if not bool(jax.device_get(finite_leaves(state))):
      return "its parameters or optimizer state hold NaN or inf"
    if model is not None and loss_layer is not None and batch is not None:
      loss = float(jax.device_get(next_loss(state, batch)))
      if not np.isfinite(loss):
        return f"its loss on the last batch is {loss}"
    return None

  return check
