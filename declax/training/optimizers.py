"""Optimizers and learning-rate schedules from plain settings (what a config's sections hold).

```python
schedule = make_schedule('warmup_cosine', learning_rate=1e-3, warmup_steps=100, decay_steps=10_000)
tx = make_optimizer('adamw', schedule, weight_decay=1e-4, clip_norm=1.0, grad_accum_steps=2)
```

The learning rate is injected with `optax.inject_hyperparams`, so the value actually used at each
step sits in the optimizer state, where `current_learning_rate` finds it for logging.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from declax import registry
from declax.training.config_schema import ConfigError

__all__ = ["SCHEDULES", "EmaParamsState", "current_learning_rate", "decay_mask", "ema_params",
           "ema_params_of", "feed_plateau", "feed_plateau_metric", "make_optimizer",
           "make_schedule", "plateau"]

SCHEDULES = ("constant", "warmup_constant", "warmup_cosine", "warmup_linear", "warmup_rsqrt")

# Adafactor names its decoupled weight decay differently from the other optax optimizers.
_ADAFACTOR_DECAY = ("weight_decay_rate", "weight_decay_mask")


def _decoupled_decay_args(name: str, factory: Any) -> tuple[str, str | None] | None:
  """The arguments through which `factory` takes decoupled weight decay and its mask, if any."""
  if name == "adafactor":
    return _ADAFACTOR_DECAY
  try:
    parameters = inspect.signature(factory).parameters
  except (TypeError, ValueError):
    return None
  if "weight_decay" not in parameters:
    return None
  return "weight_decay", "mask" if "mask" in parameters else None


# ---- Schedules -----------------------------------------------------------------------------------


def make_schedule(name: str = "constant", *, learning_rate: float = 1e-3, warmup_steps: int = 0,
                  decay_steps: int | None = None, end_value: float = 0.0) -> optax.Schedule:
  """A learning-rate schedule `count -> lr` (count = optimizer updates taken).

  - `'constant'`: `learning_rate` throughout.
  - `'warmup_constant'`: linear warmup from 0 over `warmup_steps`, then constant.
  - `'warmup_cosine'`: linear warmup, then cosine decay to `end_value` at `decay_steps`.
  - `'warmup_linear'`: linear warmup, then linear decay to `end_value` at `decay_steps`.
  - `'warmup_rsqrt'`: linear warmup, then `learning_rate * sqrt(warmup_steps / count)` (Trax's
    default schedule for Transformers).
  """
  warmup_steps = int(warmup_steps)
  if name == "constant":
    return optax.constant_schedule(learning_rate)
  if name == "warmup_constant":
    return optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1))
  if name == "warmup_rsqrt":
    if warmup_steps < 1:
      raise ConfigError("schedule 'warmup_rsqrt' needs warmup_steps >= 1")

    def rsqrt(count):
      count = jnp.asarray(count, jnp.float32)
      warm = count / warmup_steps
      decay = jnp.sqrt(warmup_steps / jnp.maximum(count, warmup_steps))
      return learning_rate * jnp.minimum(warm, 1.0) * decay

    return rsqrt
  if name in ("warmup_cosine", "warmup_linear"):
    if decay_steps is None or decay_steps <= warmup_steps:
      raise ConfigError(f"schedule {name!r} needs decay_steps > warmup_steps, got decay_steps="
                       f"{decay_steps}, warmup_steps={warmup_steps}")
    if name == "warmup_cosine":
      return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, decay_steps,
                                                end_value)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1)),
         optax.linear_schedule(learning_rate, end_value, decay_steps - warmup_steps)],
        [warmup_steps])
  raise ConfigError(f"Unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}")


# ---- Optimizers ----------------------------------------------------------------------------------


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay: matrices and kernels (ndim >= 2), not biases,
  norm scales or other vectors."""
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(name: str = "adam", learning_rate: float | optax.Schedule = 1e-3, *,
                   weight_decay: float = 0.0, decay_all: bool = False,
                   clip_norm: float | None = None, grad_accum_steps: int = 1,
                   ema_decay: float | None = None, plateau_kwargs: dict | None = None,
                   **kwargs: Any) -> optax.GradientTransformation:
  """An optax optimizer by registry name: any optax factory taking a `learning_rate` (`adam`,
  `adamw`, `sgd`, `lamb`, `lion`, `adafactor`, `rmsprop`, ...) or `momentum` (sgd with 0.9).

  **Arguments**
  - `learning_rate`: a float or a schedule (`make_schedule`); injected into the optimizer state.
  - `weight_decay`: decoupled for optimizers that take it (`adamw`, `lamb`, `lion`,
    `adafactor`, ...), an L2 term added to the gradient for the others. Only parameters with
    `ndim >= 2` decay unless `decay_all`.
  - `clip_norm`: clip gradients to this global norm first.
  - `grad_accum_steps`: average the gradients of this many steps per update (`optax.MultiSteps`).
  - `ema_decay`: also keep an exponential moving average of the parameters in the optimizer
    state (`ema_params`; the `Loop` evaluates on it).
  - `plateau_kwargs`: scale the updates down when the loss plateaus (`plateau`).
  - `**kwargs`: passed to the optax factory (`b1`, `b2`, `eps`, `momentum`, `nesterov`, ...).

  ```python
  tx = make_optimizer('adamw', 1e-3, weight_decay=0.01, clip_norm=1.0)
  ```
  """
  factory = registry.get_optimizer(name)
  if name == "momentum":
    kwargs.setdefault("momentum", 0.9)
  mask = None if decay_all else decay_mask
  decay_before: list[optax.GradientTransformation] = []
  decoupled = _decoupled_decay_args(name, factory)
  if decoupled is not None:
    wd_arg, mask_arg = decoupled
    if weight_decay:
      kwargs[wd_arg] = weight_decay
      if mask_arg is not None:
        kwargs[mask_arg] = mask
    elif name != "adafactor":  # adamw/lion decay by default; here only when asked to
      kwargs[wd_arg] = 0.0
  elif weight_decay:
    decay_before.append(optax.add_decayed_weights(weight_decay, mask))
  registry.OPTIMIZERS.check_arguments(name, {**kwargs, "learning_rate": learning_rate})
  # Only the learning rate goes into the optimizer state (see `current_learning_rate`).
  static = [p for p in inspect.signature(factory).parameters if p != "learning_rate"]
  tx = optax.inject_hyperparams(factory, static_args=static)(learning_rate=learning_rate,
                                                              **kwargs)
  chain = ([optax.clip_by_global_norm(clip_norm)] if clip_norm else []) + decay_before + [tx]
  if plateau_kwargs is not None:
    chain.append(plateau(**plateau_kwargs))
  if ema_decay is not None:
    chain.append(ema_params(ema_decay))
  tx = chain[0] if len(chain) == 1 else optax.chain(*chain)
  if grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=int(grad_accum_steps)).gradient_transformation()
  elif grad_accum_steps < 1:
    raise ConfigError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}")
  return tx


def current_learning_rate(opt_state: Any) -> jax.Array | None:
  """The learning rate `inject_hyperparams` stored in `opt_state` (the first one found), times
  the reduce-on-plateau scale if there is one, or None.
  """
  scale = 1.0
  for node in jax.tree.leaves(opt_state, is_leaf=_is_plateau):
    if _is_plateau(node):
      scale = node.scale
  for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
    names = [str(getattr(k, "key", getattr(k, "name", ""))) for k in path[-2:]]
    if names == ["hyperparams", "learning_rate"]:
      return leaf * scale
  return None


# ---- Reduce on plateau, EMA of the parameters ----------------------------------------------------


def _is_plateau(node: Any) -> bool:
  return isinstance(node, optax.contrib.ReduceLROnPlateauState)


def plateau(metric: str = "train/loss", **kwargs: Any) -> optax.GradientTransformationExtraArgs:
  """`optax.contrib.reduce_on_plateau(**kwargs)`, fed by the training loss of each step
  (`metric='train/loss'`: the train step passes `value=loss`) or by an evaluation metric
  (any other name, e.g. `'eval/loss'`: the `Loop` calls `feed_plateau` after evaluating, and
  the train step only applies the current scale).

  ```python
  tx = optax.chain(optax.adam(1e-3), plateau('eval/loss', patience=3, factor=0.5))
  ```
  """
  inner = optax.contrib.reduce_on_plateau(**kwargs)
  if metric == "train/loss":
    return inner

  def update(updates, state, params=None, **extra):
    del params, extra  # the scale changes only in `feed_plateau`
    return jax.tree.map(lambda u: state.scale.astype(u.dtype) * u, updates), state

  return optax.GradientTransformationExtraArgs(inner.init, update)


def feed_plateau(opt_state: Any, value: Any, **kwargs: Any) -> Any:
  """`opt_state` with every reduce-on-plateau state updated by one metric `value`."""
  inner = optax.contrib.reduce_on_plateau(**kwargs)

  def one(node):
    return inner.update({}, node, value=jnp.asarray(value, jnp.float32))[1] if _is_plateau(
        node) else node

  return jax.tree.map(one, opt_state, is_leaf=_is_plateau)


def feed_plateau_metric(opt_state: Any, plateau: Mapping[str, Any],
                        results: Mapping[str, float]) -> Any:
  """`feed_plateau` with the evaluation `results[plateau['metric']]` and the rest of the
  `plateau` option (`Loop(plateau={'metric': 'eval/loss', 'patience': 2})`) as its kwargs;
  `opt_state` unchanged when the results lack that metric."""
  if plateau.get("metric", "train/loss") not in results:
    return opt_state
  kwargs = {k: v for k, v in plateau.items() if k != "metric"}
  return feed_plateau(opt_state, results[plateau["metric"]], **kwargs)


class EmaParamsState(NamedTuple):
  """The exponential moving average of the parameters (`ema`), and the updates taken."""

  count: jax.Array
  ema: Any


def ema_params(decay: float) -> optax.GradientTransformation:
  """Keeps `ema = decay * ema + (1 - decay) * new params` in the optimizer state; the updates
  pass through unchanged. Put it last in a chain (it needs the final updates).

  ```python
  tx = optax.chain(optax.adam(1e-3), ema_params(0.999))
  ema = ema_params_of(opt_state)          # the averaged parameters
  ```
  """
  if not 0.0 <= decay < 1.0:
    raise ConfigError(f"ema_decay must be in [0, 1), got {decay}")

  def init(params):
    return EmaParamsState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.asarray, params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("ema_params needs the parameters: optimizer.update(grads, state, params)")
    new = optax.apply_updates(params, updates)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), state.ema, new)
    return updates, EmaParamsState(state.count + 1, ema)

  return optax.GradientTransformation(init, update)


def ema_params_of(opt_state: Any) -> Any | None:
  """The EMA parameters `ema_params` keeps in `opt_state` (the first found), or None."""
  for node in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, EmaParamsState)):
    if isinstance(node, EmaParamsState):
      return node.ema
  return None
