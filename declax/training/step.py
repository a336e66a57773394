"""The train and eval steps: pure functions of `(state, batch)`, ready for `jax.jit` with shardings.

The loss is Trax's `Serial(model, loss_layer)` applied to the batch tuple: the model takes the
first `model.n_in` items, its outputs go on top of the remaining items (targets, weights), and the
loss layer takes what it needs from there. If the loss (or a metric) wants one more item than the
batch has, weights of ones shaped like the targets are added, as Trax's inputs do.
"""

from __future__ import annotations

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
from declax.training.optimizers import current_learning_rate
from declax.training.state import TrainState

__all__ = ["TrainMetrics", "WeightedAverage", "eval_metrics_type", "make_eval_step",
           "make_train_step", "run_model", "run_on_stack"]

Batch = Sequence[jax.Array]


# ------------------------------------------------------------------------------------------------
# Metrics aggregated in jit (clu.metrics)
# ------------------------------------------------------------------------------------------------


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
# The same without the learning rate, for optimizers whose rate cannot be known (a plain
# `optax.adamw(3e-3)` without a schedule): it is left out of the logs rather than logged as NaN.
TrainMetricsNoLR = clu_metrics.Collection.create(
    loss=clu_metrics.Average.from_output("loss"),
    grad_norm=clu_metrics.Average.from_output("grad_norm"),
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


# ------------------------------------------------------------------------------------------------
# Running the model and the loss on the stack
# ------------------------------------------------------------------------------------------------


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


def run_on_stack(layer: nn.Module, stack: Sequence[jax.Array]) -> jax.Array:
  """Applies a parameter-free layer (a loss or metric) to the top of the stack.

  One missing item (the weights) is filled with ones shaped like the item above it.
  """
  items = list(stack[: layer.n_in])
  if len(items) == layer.n_in - 1 and len(items) >= 2:
    items.append(jnp.ones(jnp.shape(items[-1]), jnp.float32))
  if len(items) != layer.n_in:
    raise ValueError(f"{layer.header} takes {layer.n_in} items, but only {len(items)} are on "
                     "the stack after the model (model outputs + targets [+ weights])")
  return layer.apply({}, pack(items))


def batch_weight(model: nn.Module, batch: Batch) -> jax.Array:
  """The weight of a batch for averaging: the sum of its weights item, else its size."""
  if len(batch) >= model.n_in + 2:
    return jnp.sum(batch[-1].astype(jnp.float32))
  return jnp.asarray(batch[0].shape[0], jnp.float32)


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------


def make_train_step(model: nn.Module, loss_layer: nn.Module,
                    optimizer: optax.GradientTransformation, *,
                    lr_schedule: Callable[[jax.Array], jax.Array] | None = None,
                    rng_streams: Sequence[str] = ("dropout",)
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, TrainMetrics]]:
  """Returns `train_step(state, batch) -> (state, TrainMetrics)`: one optimizer step.

  Other variable collections (BatchNorm's `batch_stats`) are updated from the forward pass.
  The learning rate reported is the one `inject_hyperparams` stored in the optimizer state, else
  `lr_schedule(step)`, else none (the metrics have no `learning_rate`).
  """
  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, TrainMetrics]:
    step_rng = jax.random.fold_in(state.rng, state.step)
    rngs = dict(zip(rng_streams, jax.random.split(step_rng, len(rng_streams)), strict=True))
    mutable = list(state.model_state)

    def loss_fn(params):
      variables = {"params": params, **state.model_state}
      stack, updates = run_model(model, variables, batch, rngs=rngs, mutable=mutable or False)
      return run_on_stack(loss_layer, stack), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    param_updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, param_updates)
    lr = current_learning_rate(opt_state)
    if lr is None and lr_schedule is not None:
      lr = lr_schedule(state.step)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state={**state.model_state, **updates})
    if lr is None:
      metrics = TrainMetricsNoLR.single_from_model_output(loss=loss,
                                                          grad_norm=optax.tree.norm(grads))
    else:
      metrics = TrainMetrics.single_from_model_output(
          loss=loss, grad_norm=optax.tree.norm(grads),
          learning_rate=jnp.asarray(lr, jnp.float32))
    return new_state, metrics

  return train_step


def make_eval_step(eval_model: nn.Module, metric_layers: Sequence[nn.Module],
                   metric_names: Sequence[str]) -> Callable[[TrainState, Batch], Any]:
  """Returns `eval_step(state, batch) -> Collection` of batch-weighted metric averages."""
  collection = eval_metrics_type(metric_names)

  def eval_step(state: TrainState, batch: Batch):
    stack, _ = run_model(eval_model, state.variables, batch)
    values = {name: run_on_stack(layer, stack)
              for name, layer in zip(metric_names, metric_layers, strict=True)}
    weight = batch_weight(eval_model, batch)
    return collection.single_from_model_output(weight=weight, **values)

  return eval_step
