"""Linen modules inside declax combinators; plain arrays outside a mesh; the NNX bridge."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import declax.layers as tl
from declax import sharding

KEY = jax.random.PRNGKey(0)
X = jnp.ones((2, 3))


class TwoInputs(nn.Module):
  @nn.compact
  def __call__(self, a, b):
    return nn.Dense(3)(a) + b


def test_plain_linen_modules_are_one_to_one_layers_named_by_class():
  model = tl.Serial(nn.Dense(8), tl.Relu(), nn.Dense(2))
  assert str(model) == "Serial[\n  Dense\n  Relu\n  Dense\n]"
  variables = model.init(KEY, X)
  hidden = nn.Dense(8).apply({"params": variables["params"]["layers_0"]["module"]}, X)
  expected = nn.Dense(2).apply({"params": variables["params"]["layers_2"]["module"]},
                               jax.nn.relu(hidden))
  np.testing.assert_allclose(model.apply(variables, X), expected, rtol=1e-6)


def test_linen_wrapper_states_another_arity():
  model = tl.Serial(tl.Dup(), tl.Linen(TwoInputs(), n_in=2))
  assert "TwoInputs_in2" in str(model)
  assert model.apply(model.init(KEY, X), X).shape == (2, 3)


def test_a_module_whose_call_cannot_take_the_items_fails_at_construction():
  with pytest.raises(tl.LinenArityError, match=r"TwoInputs.*n_in=2"):
    tl.Serial(nn.Dense(2), TwoInputs())
  with pytest.raises(tl.LinenArityError, match="cannot take 3"):
    tl.Linen(nn.Dense(2), n_in=3)


@pytest.mark.parametrize("branches", [(nn.Dense(2), None), (nn.Dense(2), []), (None, nn.Dense(2)),
                                      ([], tl.Dense(2))])
def test_identity_branches_in_any_position(branches):
  for combinator, x in ((tl.Branch, X), (tl.Parallel, (X, X))):
    model = combinator(*branches)
    outputs = model.apply(model.init(KEY, x), x)
    identity = 0 if branches[0] in (None, []) else 1
    np.testing.assert_array_equal(outputs[identity], X)
    assert outputs[1 - identity].shape == (2, 2)


def test_linen_dropout_follows_the_mode():
  model = tl.Serial(nn.Dense(64), nn.Dropout(0.5))
  x = jnp.ones((4, 3))
  variables = model.init(KEY, x)
  train = model.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(1)})
  evaluated = tl.with_mode(model, "eval").apply(variables, x)
  assert float(jnp.mean(train == 0)) > 0.2
  assert float(jnp.mean(evaluated == 0)) < 0.05
  fixed = tl.Serial(nn.Dropout(0.5, deterministic=True))
  np.testing.assert_array_equal(fixed.apply({}, x), x)


def test_init_outside_a_mesh_returns_plain_arrays():
  variables = tl.Serial(tl.Dense(4), tl.LayerNorm()).init(KEY, jnp.ones((2, 3)))
  for leaf in jax.tree.leaves(variables, is_leaf=lambda v: isinstance(v, nn.Partitioned)):
    assert isinstance(leaf, jax.Array)
  kernel = variables["params"]["layers_0"]["kernel"]
  assert kernel.shape == (3, 4) and (kernel * 2).shape == (3, 4)


def test_logical_axis_names_are_kept_under_axis_rules():
  with nn.logical_axis_rules(sharding.rules_from_config()):
    variables = tl.Dense(4).init(KEY, X)
  kernel = variables["params"]["kernel"]
  assert isinstance(kernel, nn.Partitioned) and kernel.names == ("embed", "mlp")


def test_nnx_bridge_wraps_a_declax_model():
  model = nnx.bridge.ToNNX(tl.Serial(tl.Dense(4), tl.Relu(), tl.Dense(2)), rngs=nnx.Rngs(0))
  nnx.bridge.lazy_init(model, X)
  assert model(X).shape == (2, 2)


class Halves(nn.Module):
  def __call__(self, x):
    return x[..., :1], x[..., 1:]


def test_linen_wrapper_with_several_outputs_and_its_output_count_checked():
  model = tl.Serial(tl.Linen(Halves(), n_out=2), tl.Concatenate())
  np.testing.assert_array_equal(model.apply({}, X), X)
  with pytest.raises(tl.LayerError, match="returned 2 outputs, but n_out is 1"):
    tl.Serial(Halves()).apply({}, X)
