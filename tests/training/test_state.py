"""TrainState creation: boxed parameters, optimizer state sharded like its parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import declax.layers as tl
from declax import sharding
from declax.training.optimizers import make_optimizer
from declax.training.state import (
    TrainState,
    box_like_params,
    make_init_fn,
    path_name,
    tree_signature,
)
from tests.training.training_utils import tiny_classifier

INPUTS = (jax.ShapeDtypeStruct((4, 4, 4, 1), jnp.float32),)


def _init_under_rules(init):
  with nn.logical_axis_rules(sharding.rules_from_config()):  # as create_or_restore_state does
    return init(jax.random.PRNGKey(0))


def test_init_fn_builds_a_boxed_state_with_model_state():
  init = make_init_fn(tiny_classifier(batch_norm=True), optax.adam(1e-3), INPUTS)
  state = _init_under_rules(init)
  assert isinstance(state, TrainState)
  assert int(state.step) == 0 and state.rng.shape == (2,)
  kernel = state.params["layers_1"]["kernel"]
  assert isinstance(kernel, nn.Partitioned) and kernel.names == ("embed", "mlp")
  assert set(state.model_state) == {"batch_stats"}
  assert set(state.variables) == {"params", "batch_stats"}


def test_optimizer_state_mirrors_the_parameter_boxes():
  init = make_init_fn(tiny_classifier(), make_optimizer("adamw", 1e-3, weight_decay=0.1,
                                                        grad_accum_steps=2), INPUTS)
  state = _init_under_rules(init)
  boxed = [(path_name(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(
      state.opt_state, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]]
  mu = [leaf for p, leaf in boxed if p.endswith("mu/layers_1/kernel")]
  assert len(mu) == 1 and mu[0].names == ("embed", "mlp")
  counts = [leaf for p, leaf in boxed if p.endswith("count")]
  assert counts and not any(isinstance(c, nn.Partitioned) for c in counts)
  # MultiSteps' accumulated gradients are boxed too.
  assert any(p.startswith("acc_grads") and isinstance(v, nn.Partitioned) for p, v in boxed)


def test_box_like_params_requires_the_same_shape():
  boxed = {"w": nn.Partitioned(jnp.ones((3, 4)), names=("embed", "mlp"))}
  tree = {"mu": {"w": jnp.zeros((3, 4))}, "v_row": {"w": jnp.zeros((3,))}}
  out = box_like_params(tree, boxed)
  assert isinstance(out["mu"]["w"], nn.Partitioned)
  assert not isinstance(out["v_row"]["w"], nn.Partitioned)


def test_init_is_deterministic_and_params_do_not_depend_on_mode():
  train = make_init_fn(tiny_classifier(dropout=0.5), optax.sgd(0.1), INPUTS)
  evalm = make_init_fn(tl.with_mode(tiny_classifier(dropout=0.5), "eval"), optax.sgd(0.1), INPUTS)
  a, b = train(jax.random.PRNGKey(1)), evalm(jax.random.PRNGKey(1))
  for x, y in zip(jax.tree.leaves(nn.unbox(a.params)), jax.tree.leaves(nn.unbox(b.params)),
                  strict=True):
    np.testing.assert_array_equal(x, y)


def test_tree_signature_and_path_names():
  tree = {"a": [jnp.zeros((2,), jnp.int32)], "b": nn.Partitioned(jnp.ones((1, 3)), ("x", "y"))}
  assert tree_signature(tree) == {"a/0": ((2,), "int32"), "b": ((1, 3), "float32")}


def test_create_or_restore_state_creates_then_restores_on_the_same_shardings(tmp_path):
  from declax import sharding
  from declax.training.checkpoints import Checkpointer
  from declax.training.state import create_or_restore_state

  mesh, rules = sharding.mesh_from_config(), sharding.rules_from_config()
  model, tx = tiny_classifier(), optax.adam(1e-3)
  checkpointer = Checkpointer(str(tmp_path), async_save=False)
  fresh = create_or_restore_state(model, tx, INPUTS, mesh, rules, seed=3,
                                  checkpointer=checkpointer)
  assert fresh.step is None and fresh.data_state is None
  assert jax.tree.structure(fresh.state) == jax.tree.structure(fresh.shardings)
  checkpointer.save(7, fresh.state, force=True)
  checkpointer.wait_until_finished()
  restored = create_or_restore_state(model, tx, INPUTS, mesh, rules, checkpointer=checkpointer)
  checkpointer.close()
  assert restored.step == 7
  for a, b in zip(jax.tree.leaves(fresh.state), jax.tree.leaves(restored.state), strict=True):
    np.testing.assert_array_equal(a, b)
    assert a.sharding == b.sharding
