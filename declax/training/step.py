"""The train and eval steps: pure functions of `(state, batch)`, ready for `jax.jit` with shardings.

The loss is Trax's `Serial(model, loss_layer)` applied to the batch tuple: the model takes the
first `model.n_in` items, its outputs go on top of the remaining items (targets, weights), and the
loss layer takes what it needs from there. If the loss (or a metric) wants one more item than the
batch has, weights of ones shaped like the targets are added, as Trax's inputs do.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from declax.layers.base import unpack_outputs
from declax.layers.stack import inputs_from_stack, outputs_onto_stack, pack
from declax.training.id_checks import IdChecks
from declax.training.optimizers import current_learning_rate, ema_params_of
from declax.training.reporting import Running, accumulate
from declax.training.state import TrainState

__all__ = ["TrainMetrics", "WeightedAverage", "eval_metrics_type", "loss_items", "make_eval_step",
           "make_train_step", "run_model", "run_on_stack", "with_running_metrics"]

Batch = Sequence[jax.Array]


# ---- Metrics aggregated in jit (clu.metrics) -----------------------------------------------------


@flax.struct.dataclass
class WeightedAverage(clu_metrics.Metric):
  """Average of per-batch values weighted by each batch's total weight (clu `Metric`)."""

  total: jax.Array
  weight: jax.Array

  @classmethod
  def empty(cls) -> WeightedAverage:
    return cls(total=jnp.zeros((), jnp.float32), weight=jnp.zeros((), jnp.float32))

  @classmethod
  def from_model_output(cls, values: jax.Array, weight: jax.Array, **_) -> WeightedAverage:
    weight = jnp.asarray(weight, jnp.float32)
    return cls(total=jnp.asarray(values, jnp.float32) * weight, weight=weight)

  def merge(self, other: WeightedAverage) -> WeightedAverage:
    return type(self)(total=self.total + other.total, weight=self.weight + other.weight)

  def compute(self) -> jax.Array:
    return self.total / self.weight


# Per-step training metrics, merged over a log interval into means (learning rate: last value).
# (`Collection.create`, not a class body: clu reads `__annotations__`, which postponed
# evaluation of annotations would turn into strings.)
TrainMetrics = clu_metrics.Collection.create(
    loss=clu_metrics.Average.from_output("loss"),
    grad_norm=clu_metrics.Average.from_output("grad_norm"),
    learning_rate=clu_metrics.LastValue.from_output("learning_rate"),
)


def eval_metrics_type(names: Sequence[str]) -> type[clu_metrics.Collection]:
  """A clu `Collection` with one `WeightedAverage` per metric name."""
  return clu_metrics.Collection.create(**{n: _weighted(n) for n in names})


def _weighted(name: str) -> type[clu_metrics.Metric]:
  class Named(WeightedAverage):
    @classmethod
    def from_model_output(cls, weight: jax.Array, **outputs) -> WeightedAverage:
      return super().from_model_output(outputs[name], weight)

  return flax.struct.dataclass(Named)


# ---- Running the model and the loss on the stack -------------------------------------------------


def run_model(model: nn.Module, variables: dict, batch: Batch, *, rngs: dict | None = None,
              mutable: Sequence[str] | bool = False) -> tuple[list, dict]:
  """Applies `model` to the first `model.n_in` batch items; returns `(stack, updates)` where
  the stack is the model's outputs on top of the remaining batch items."""
  n_in = model.n_in
  if len(batch) < n_in:
    raise ValueError(f"the model takes {n_in} inputs, but the batch has only {len(batch)} "
                     "items")
  result = model.apply(variables, pack(inputs_from_stack(batch, n_in)), rngs=rngs,
                       mutable=mutable)
  outputs, updates = result if mutable else (result, {})
  return list(outputs_onto_stack(unpack_outputs(outputs, model), batch, n_in)), dict(updates)


def loss_items(layer: nn.Module, stack: Sequence[jax.Array]) -> list[jax.Array]:
  """The `layer.n_in` top items of the stack; one missing item (the weights) is filled with
  ones shaped like the item above it."""
  items = list(stack[: layer.n_in])
  if len(items) == layer.n_in - 1 and len(items) >= 2:
    items.append(jnp.ones(jnp.shape(items[-1]), jnp.float32))
  if len(items) != layer.n_in:
    raise ValueError(f"{layer.header} takes {layer.n_in} items, but only {len(items)} are on "
                     "the stack after the model (model outputs + targets [+ weights])")
  return items


def run_on_stack(layer: nn.Module, stack: Sequence[jax.Array], params: Any = None) -> jax.Array:
  """Applies a loss or metric layer (with its `params`, if it has any: a task's head) to the
  top of the stack (`loss_items`)."""
  return layer.apply({"params": params} if params else {}, pack(loss_items(layer, stack)))


def batch_weight(model: nn.Module, batch: Batch) -> jax.Array:
  """The weight of a batch for averaging: the sum of its weights item, else its size."""
  if len(batch) >= model.n_in + 2:
    return jnp.sum(batch[-1].astype(jnp.float32))
  return jnp.asarray(batch[0].shape[0], jnp.float32)


# ---- Steps ---------------------------------------------------------------------------------------


def takes_extra_args(optimizer: optax.GradientTransformation) -> bool:
  """Whether `optimizer.update` accepts extra keyword arguments (`value=loss`)."""
  if isinstance(optimizer, optax.GradientTransformationExtraArgs):
    return True
  try:
    parameters = inspect.signature(optimizer.update).parameters.values()
  except (TypeError, ValueError):
    return False
  return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def make_train_step(model: nn.Module, loss_layer: nn.Module,
                    optimizer: optax.GradientTransformation, *,
                    lr_schedule: Callable[[jax.Array], jax.Array] | None = None,
                    rng_streams: Sequence[str] = ("dropout",), task: int | None = None,
                    id_checks: IdChecks | None = None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, TrainMetrics]]:
  """Returns `train_step(state, batch) -> (state, TrainMetrics)`: one optimizer step.

  Other variable collections (BatchNorm's `batch_stats`) are updated from the forward pass.
  The learning rate reported is the one `inject_hyperparams` stored in the optimizer state, else
  `lr_schedule(step)`, else NaN, which the `Loop` leaves out of its logs. The loss is passed
  to the optimizer as `value` (for `optax.contrib.reduce_on_plateau`). With `task=i` (a state
  with per-task heads), the step trains the model and task `i`'s head with
  `state.opt_state[i]`.
  """
  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, TrainMetrics]:
    step_rng = jax.random.fold_in(state.rng, state.step)
    rngs = dict(zip(rng_streams, jax.random.split(step_rng, len(rng_streams)), strict=True))
    mutable = list(state.model_state)

    def loss_fn(trained):
      params, head = trained
      variables = {"params": params, **state.model_state}
      with checking_ids(id_checks):
        stack, updates = run_model(model, variables, batch, rngs=rngs, mutable=mutable or False)
      ids = None
      if id_checks is not None:
        if head is None:  # (with a task head, the model's output is not the logits)
          id_checks.labels(stack[0], batch, model.n_in)
        ids = id_checks.first(state.step + 1)  # the Loop counts steps from 1
      return run_on_stack(loss_layer, stack, head), (updates, ids)

    head = None if task is None else state.heads[str(task)]
    opt_state = state.opt_state if task is None else state.opt_state[task]
    trained = (state.params, head)
    (loss, (updates, ids)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trained)
    if task is None:
      grads, trained = grads[0], trained[0]
    extra = {"value": loss} if takes_extra_args(optimizer) else {}
    # optax mixes dtypes (Adam's bias correction `1 - decay**count`, a Python float to an int32
    # power, optax/tree_utils/_tree_math.py:449; its schedules' `count / decay_steps`): standard
    # promotion for optax alone; the model and loss above run under the caller's (strict in tests).
    with jax.numpy_dtype_promotion("standard"):
      param_updates, opt_state = optimizer.update(grads, opt_state, trained, **extra)
      lr = current_learning_rate(opt_state)
      if lr is None:  # NaN marks "unknown" (a plain optax optimizer, no schedule): the Loop
        lr = lr_schedule(state.step) if lr_schedule is not None else jnp.nan  # leaves it out
    trained = optax.apply_updates(trained, param_updates)
    if task is None:
      new_state = state.replace(params=trained, opt_state=opt_state)
    else:
      opt_states = list(state.opt_state)
      opt_states[task] = opt_state
      new_state = state.replace(params=trained[0], opt_state=tuple(opt_states),
                                heads={**state.heads, str(task): trained[1]})
    new_state = new_state.replace(step=state.step + 1,
                                  model_state={**state.model_state, **updates})
    metrics = TrainMetrics.single_from_model_output(
        loss=loss, grad_norm=optax.tree.norm(grads),
        learning_rate=jnp.asarray(lr, jnp.float32))
    return (new_state, metrics) if ids is None else (new_state, metrics, ids)

  return train_step


def checking_ids(id_checks: IdChecks | None) -> Any:
  """`id_checks.embeddings()`, or a context that does nothing without checks."""
  return id_checks.embeddings() if id_checks is not None else contextlib.nullcontext()


def with_running_metrics(train_step: Callable) -> Callable:
  """`step(state, running, batch) -> (state, running)`: `train_step` with its metrics (and its
  `IdCheck`, if it returns one) merged into the running ones (`declax.training.reporting`), so
  they stay on the device in constant memory, in the same jitted call."""
  def step(state: TrainState, running: Running, batch: Batch) -> tuple[TrainState, Running]:
    state, metrics, *ids = train_step(state, batch)
    with jax.numpy_dtype_promotion("standard"):  # clu's Average divides by an int32 count
      return state, accumulate(running, state.step, metrics, *ids)  # (clu/metrics.py:739)

  return step


def ema_variables(state: TrainState) -> dict:
  """`state.variables` with the EMA parameters the optimizer keeps (`ema_params`), if any."""
  ema = ema_params_of(state.opt_state)
  if ema is None:
    return state.variables
  if isinstance(state.opt_state, tuple) and state.heads:  # per-task: EMA of (params, head)
    ema = ema[0]
  return {**state.variables, "params": ema}


def make_eval_step(eval_model: nn.Module, metric_layers: Sequence[nn.Module],
                   metric_names: Sequence[str], *, use_ema: bool = False,
                   id_checks: IdChecks | None = None) -> Callable[[TrainState, Batch], Any]:
  """Returns `eval_step(state, batch) -> Collection` of batch-weighted metric averages
  (on the EMA parameters with `use_ema`, when the optimizer keeps them). With `id_checks`, it
  returns `(Collection, IdCheck)`: the batch's labels and token ids checked as in training
  (the check's step is 1)."""
  collection = eval_metrics_type(metric_names)

  def eval_step(state: TrainState, batch: Batch):
    variables = ema_variables(state) if use_ema else state.variables
    with checking_ids(id_checks):
      stack, _ = run_model(eval_model, variables, batch)
    values = {name: run_on_stack(layer, stack)
              for name, layer in zip(metric_names, metric_layers, strict=True)}
    weight = batch_weight(eval_model, batch)
    metrics = collection.single_from_model_output(weight=weight, **values)
    if id_checks is None:
      return metrics
    id_checks.labels(stack[0], batch, eval_model.n_in)
    return metrics, id_checks.first(1)

  return eval_step
