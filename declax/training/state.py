"""The train state: one pytree holding everything a run needs to continue.

`TrainState` is a `flax.struct.dataclass`, so it goes through `jax.jit`, sharding and Orbax as
one tree. `make_init_fn` builds the function that creates it from a PRNG key, with the
parameters' logical axis names (Linen's `Partitioned` boxes) copied onto the optimizer state
that mirrors them, so Adam's moments are sharded like the parameters they belong to.
`create_or_restore_state` is the one place a run's state comes from: created already sharded,
or restored from a checkpoint onto the same shardings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from declax import sharding
from declax.layers.base import pack

__all__ = ["Head", "StartState", "TrainState", "box_like_params", "create_or_restore_state",
           "key_name", "make_init_fn", "path_name", "tree_signature"]


@struct.dataclass
class TrainState:
  """Parameters, optimizer state, other variable collections, step and PRNG key.

  **Fields**
  - `step`: int32 scalar, the number of optimizer steps taken (batches consumed).
  - `params`: the model's `'params'` collection (not the loss layer's: it has none).
  - `opt_state`: the optax state.
  - `model_state`: the other collections the model keeps, e.g. `{'batch_stats': ...}`.
  - `rng`: a raw `uint32[2]` key; step `s` uses `fold_in(rng, s)`, so a resumed run draws the
    same dropout masks as an uninterrupted one.
  - `heads`: with several `TrainTask`s (or a loss layer with parameters), `{'0': params of
    task 0's loss layer, ...}`; then `opt_state` is a tuple, one optimizer state per task over
    `(params, its head)`. Empty otherwise.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array
  heads: Any = struct.field(default_factory=dict)

  @property
  def variables(self) -> dict[str, Any]:
    """The Linen variables to `apply` the model with: `{'params': ..., **model_state}`."""
    return {"params": self.params, **self.model_state}


# ---- Paths ---------------------------------------------------------------------------------------


def key_name(key: Any) -> str:
  """One pytree path entry as text: dict keys, attribute names and sequence indices alike."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_name(path: Sequence[Any]) -> str:
  """A pytree path as `'params/Dense_0/kernel'`."""
  return "/".join(key_name(k) for k in path)


def _is_box(x: Any) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def _shapes_of(abstract: Any) -> Any:
  """An abstract (boxed) tree without its boxes (outside a trace: no sharding constraints)."""
  return jax.tree.map(lambda x: x.value if hasattr(x, "value") and _is_box(x) else x, abstract,
                      is_leaf=_is_box)


def tree_signature(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """`{path: (shape, dtype)}` for every array leaf of a (possibly boxed) tree."""
  flat = jax.tree_util.tree_flatten_with_path(nn.unbox(tree))[0]
  return {path_name(p): (tuple(np.shape(x)), str(np.dtype(x.dtype))) for p, x in flat}


def box_like_params(tree: Any, boxed_params: Any) -> Any:
  """Boxes the leaves of `tree` (e.g. an optax state) that mirror a parameter like that parameter.

  A leaf mirrors a parameter when its path ends with the parameter's path and it has the same
  shape (Adam's `mu/Dense_0/kernel`); other leaves (counts, factored moments) stay unboxed and
  get the default sharding.
  """
  boxes = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(boxed_params, is_leaf=_is_box)[0]:
    if _is_box(leaf):
      boxes[tuple(key_name(k) for k in path)] = leaf

  def rebox(path, leaf):
    names = tuple(key_name(k) for k in path)
    for start in range(len(names)):
      box = boxes.get(names[start:])
      if box is not None and np.shape(box.unbox()) == np.shape(leaf):
        return box.replace_boxed(leaf)
    return leaf

  return jax.tree_util.tree_map_with_path(rebox, tree)


# ---- Initialisation ------------------------------------------------------------------------------


class Head(NamedTuple):
  """A task's loss layer with its batch shapes, for a state with per-task heads."""

  loss_layer: nn.Module
  batch_specs: Sequence[jax.ShapeDtypeStruct]


def make_init_fn(model: nn.Module, optimizer: optax.GradientTransformation | Sequence,
                 model_inputs: Sequence[jax.ShapeDtypeStruct], *,
                 heads: Sequence[Head] | None = None
                 ) -> Callable[..., TrainState]:
  """Returns `init(rng, params=None) -> TrainState` (boxed), to be traced by `jax.jit`.

  `model_inputs` are the shapes and dtypes of the first `model.n_in` items of a global batch.
  `params` (`{'layers_1/kernel': array, ...}`, any subset) replaces those initial parameters
  (`model_init`).
  With `heads` (one per task), `optimizer` is a sequence of as many optimizers, and each head's
  loss layer is initialised on the model's outputs for its task's batch.
  """
  def init(rng: jax.Array, loaded: Any = None) -> TrainState:
    params_rng, dropout_rng, train_rng = jax.random.split(rng, 3)
    inputs = pack([jnp.zeros(x.shape, x.dtype) for x in model_inputs])
    variables = dict(model.init({"params": params_rng, "dropout": dropout_rng}, inputs))
    boxed_params = variables.pop("params", {})
    if loaded:  # {path: array}: those parameters replace their random initial values
      def load(path, leaf):
        new = loaded.get(path_name(path))
        if new is None:
          return leaf
        return leaf.replace_boxed(new) if _is_box(leaf) else new

      boxed_params = jax.tree_util.tree_map_with_path(load, boxed_params, is_leaf=_is_box)
    params = nn.unbox(boxed_params)
    if heads is None:
      with jax.numpy_dtype_promotion("standard"):  # optax schedules mix dtypes (see step.py)
        opt_state = box_like_params(optimizer.init(params), boxed_params)
      return TrainState(step=jnp.zeros((), jnp.int32), params=boxed_params, opt_state=opt_state,
                        model_state=variables, rng=train_rng)
    head_params, opt_states = {}, []
    for i, (head, tx) in enumerate(zip(heads, optimizer, strict=True)):
      head_params[str(i)] = _init_head(model, {"params": params, **variables}, head,
                                       jax.random.fold_in(params_rng, i + 1))
      both = (boxed_params, head_params[str(i)])
      with jax.numpy_dtype_promotion("standard"):
        opt_states.append(box_like_params(tx.init(nn.unbox(both)), both))
    return TrainState(step=jnp.zeros((), jnp.int32), params=boxed_params,
                      opt_state=tuple(opt_states), model_state=variables, rng=train_rng,
                      heads=head_params)

  return init


def _init_head(model: nn.Module, variables: dict, head: Head, rng: jax.Array) -> Any:
  """The parameters of a task's loss layer, initialised on the model's outputs for its batch."""
  from declax.training.step import loss_items, run_model

  batch = [jnp.zeros(x.shape, x.dtype) for x in head.batch_specs]
  stack, _ = run_model(model, variables, batch)
  return head.loss_layer.init(rng, pack(loss_items(head.loss_layer, stack))).get("params", {})


class StartState(NamedTuple):
  """What `create_or_restore_state` returns: the placed `state`, its `shardings` (to jit the
  steps with), and the checkpoint `step` and `data_state` it came from (None when fresh)."""

  state: TrainState
  shardings: Any
  step: int | None
  data_state: dict | None


def create_or_restore_state(model: nn.Module, optimizer: optax.GradientTransformation,
                            model_inputs: Sequence[jax.ShapeDtypeStruct], mesh: jax.sharding.Mesh,
                            rules: Sequence[tuple], *, seed: int = 0, checkpointer: Any = None,
                            step: int | None = None, heads: Sequence[Head] | None = None,
                            init_params: Callable[[Any], Any] | None = None) -> StartState:
  """The train state on `mesh`: restored from `checkpointer` (at `step`, default its newest), or
  created fresh when it holds none.

  One `eval_shape` gives the state's structure and, with `rules`, its shardings; a fresh state
  is created by `jit(init, out_shardings=...)` (never whole on one device), a restored one is
  read by Orbax straight onto the same shardings (big_vision's pattern). On a fresh start,
  `init_params(abstract_params) -> {path: array}` (e.g. `declax.training.model_init.loader`)
  supplies initial parameters instead of the random ones. `heads`: see `make_init_fn`.

  ```python
  start = create_or_restore_state(model, optax.adam(1e-3), [jax.ShapeDtypeStruct((8, 4),
                                  jnp.float32)], mesh, sharding.rules_from_config())
  start.state.params
  ```
  """
  init_fn = make_init_fn(model, optimizer, model_inputs, heads=heads)
  rng = jax.random.PRNGKey(seed)
  with sharding.mesh_context(mesh, rules):
    abstract = jax.eval_shape(init_fn, rng)
    shardings = sharding.state_shardings(abstract, mesh, rules)
    if step is None and checkpointer is not None:
      step = checkpointer.latest_step()
    if step is None:
      loaded = None
      if init_params is not None:  # placed on the parameters' own shardings before the jit
        where = {path_name(p): sh for p, sh in
                 jax.tree_util.tree_flatten_with_path(shardings.params)[0]}
        loaded = {k: jax.device_put(v, where[k])
                  for k, v in init_params(_shapes_of(abstract.params)).items()}
      state = jax.jit(lambda key, p: nn.unbox(init_fn(key, p)), out_shardings=shardings)(rng,
                                                                                        loaded)
      return StartState(state, shardings, None, None)
  target = sharding.abstract_with_shardings(abstract, shardings)
  state, data_state = checkpointer.restore(step, target)
  return StartState(state, shardings, step, data_state)
