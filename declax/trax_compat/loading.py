"""`init_from_file`: a Trax checkpoint as Linen variables (and, optionally, an optax Adam state).

```python
model = model_from_trax('MLP', layer_widths=(32, 16, 5))
variables = init_from_file(model, '../shared/trax_checkpoints/mlp/model.pkl.gz')
model.apply(variables, x)                                  # Trax's outputs
run = init_from_file(model, path, weights_only=False)     # + run.step, run.opt_state
```
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from declax.trax_compat.files import TraxCheckpointError, read_checkpoint
from declax.trax_compat.weights import Path, param_order, unflatten_trax

__all__ = ["TraxRun", "init_from_file", "trax_adam"]


class TraxRun(NamedTuple):
  """A Trax training run continued in declax: the variables, Trax's step (the number of steps
  done) and the Adam state (`optax.adam`'s structure, `count == step`)."""

  variables: dict
  step: int
  opt_state: Any


def _signature_inputs(signature: Any, path: str) -> tuple:
  if signature is None:
    raise TraxCheckpointError(f"{path}: the file has no input_signature; pass example inputs: "
                              f"init_from_file(model, path, x)")
  items = signature if isinstance(signature, (tuple, list)) else (signature,)
  structs = tuple(jax.ShapeDtypeStruct(s.shape, _x64_free(s.dtype)) for s in items)
  return (structs[0],) if len(structs) == 1 else (structs,)


def _x64_free(dtype: Any) -> np.dtype:
  # Trax pickles int64/float64 signatures from numpy batches; jax computes in 32 bits.
  dtype = np.dtype(dtype)
  return {np.dtype("int64"): np.dtype("int32"), np.dtype("float64"): np.dtype("float32")}.get(
      dtype, dtype)


def _is_box(x: Any) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def _key_path(path: tuple) -> Path:
  return tuple(str(getattr(k, "key", k)) for k in path)


def _fill(abstract: Any, arrays: dict[Path, np.ndarray]) -> Any:
  """`abstract`'s tree (ShapeDtypeStructs, maybe in logical-axis boxes) with `arrays` put in,
  as plain arrays (optax and `model.apply` take them; `Loop` re-adds the sharding names)."""
  def put(path, leaf):
    return jnp.asarray(arrays[_key_path(path)], nn.unbox(leaf).dtype)
  return jax.tree_util.tree_map_with_path(put, abstract, is_leaf=_is_box)


def _shapes(abstract_params: Any) -> dict[Path, tuple]:
  leaves = jax.tree_util.tree_leaves_with_path(abstract_params, is_leaf=_is_box)
  return {_key_path(p): tuple(nn.unbox(x).shape) for p, x in leaves}


def init_from_file(model: nn.Module, path: str | os.PathLike, *example_inputs: Any,
                   weights_only: bool = True) -> dict | TraxRun:
  """Linen variables for `model.apply`, read from a Trax checkpoint.

  `path` is a Trax 1.4 `Loop` checkpoint (`model.pkl.gz`, with `model.weights.npy.gz` and
  `model.opt_slots0.npy.gz` next to it) or a `Layer.save_to_file` file. `model` is the
  Trax-equivalent declax model (`model_from_trax(name, **trax_kwargs)`); `example_inputs` are
  what `model.init` takes (arrays or `jax.ShapeDtypeStruct`s; default: the checkpoint's input
  signature). Trax's flat weights are matched to the parameters in creation order; any count or
  shape mismatch raises `TraxCheckpointError` listing the parameter paths. Pickles are read with
  an allow-list: a checkpoint never runs code.

  With `weights_only=False` returns a `TraxRun(variables, step, opt_state)` whose `opt_state`
  is the state of `optax.adam` (or of `trax_adam`, which adds Trax's weight decay) built from
  Trax's Adam slots, so training continues where Trax stopped.

  ```python
  variables = init_from_file(model, 'run/model.pkl.gz', jnp.zeros((1, 16), jnp.int32))
  ```
  """
  path = os.fspath(path)
  checkpoint = read_checkpoint(path)
  if not example_inputs:
    example_inputs = _signature_inputs(checkpoint.input_signature, path)
  order, abstract = param_order(model, *example_inputs)
  abstract_params = abstract.get("params", {})
  shapes = _shapes(abstract_params)
  arrays = unflatten_trax(checkpoint.flat_weights, order, shapes)
  variables = {"params": _fill(abstract_params, arrays)}
  others = [c for c in abstract if c != "params"]
  if others:  # decoding caches, statistics: their initial values
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), example_inputs)
    initial = jax.jit(model.init)(jax.random.key(0), *zeros)
    variables.update({c: initial[c] for c in others})
  if weights_only:
    return variables
  if checkpoint.flat_slots is None:
    raise TraxCheckpointError(f"{path}: no optimizer slots next to it (model.opt_slots0.npy.gz); "
                              f"use weights_only=True to load the weights alone")
  n = len(checkpoint.flat_weights)
  if len(checkpoint.flat_slots) != 2 * n:
    raise TraxCheckpointError(f"{path}: {len(checkpoint.flat_slots)} optimizer slots for {n} "
                              f"weights; Adam keeps 2 per weight (m, v). Only Trax's Adam slots "
                              f"can be continued in declax")
  moments = [unflatten_trax(checkpoint.flat_slots[k::2], order, shapes, what=what)
             for k, what in ((0, "Adam first moments"), (1, "Adam second moments"))]
  step = int(checkpoint.step or 0)
  mu, nu = (_fill(abstract_params, m) for m in moments)
  template = optax.adam(1.0).init(variables["params"])
  adam_state = template[0]._replace(count=jnp.asarray(step, jnp.int32), mu=mu, nu=nu)
  return TraxRun(variables, step, (adam_state, *template[1:]))


def trax_adam(learning_rate: float | optax.Schedule = 1e-4, weight_decay_rate: float = 1e-5,
              b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-5) -> optax.GradientTransformation:
  """Trax's `Adam` as an optax transformation (Trax's defaults): `optax.adam` plus Trax's
  weight decay, `w -= weight_decay_rate * w` each step (not scaled by the learning rate). Its
  state is `optax.adam`'s, so `init_from_file(..., weights_only=False).opt_state` fits it.

  ```python
  optimizer = trax_adam(0.01)
  updates, opt_state = optimizer.update(grads, run.opt_state, params)
  ```
  """
  adam = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)

  def update(updates, state, params=None):
    updates, state = adam.update(updates, state, params)
    if weight_decay_rate:
      if params is None:
        raise ValueError("trax_adam: weight decay needs params: update(grads, state, params)")
      updates = jax.tree_util.tree_map(lambda u, p: u - weight_decay_rate * p, updates, params)
    return updates, state

  return optax.GradientTransformation(adam.init, update)
