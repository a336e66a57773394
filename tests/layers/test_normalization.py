"""Tests for declax.layers.normalization: LayerNorm and BatchNorm against flax.linen."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import declax.layers as tl
from tests.layers.jit_variants import LayerVariantsTest

KEY = jax.random.PRNGKey(0)


def _normal(shape, seed=1, scale=2.0, shift=1.0):
  return scale * jax.random.normal(jax.random.PRNGKey(seed), shape) + shift


def _randomise(variables, seed=5):
  """Random (non-trivial) params so scale/bias actually matter in the comparisons."""
  leaves, tree = jax.tree.flatten(nn.unbox(variables["params"]))
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  values = [jax.random.normal(k, v.shape) for k, v in zip(keys, leaves, strict=True)]
  params = jax.tree.unflatten(tree, values)
  return {**variables, "params": params}


# ------------------------------------------------------------------------------------------------
# LayerNorm
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_layer_norm_matches_flax(center, scale):
  x = _normal((2, 3, 8))
  layer = tl.LayerNorm(center=center, scale=scale)
  variables = _randomise(layer.init(KEY, x))
  assert set(variables["params"]) == {n for n, on in (("scale", scale), ("bias", center)) if on}
  expected = nn.LayerNorm(epsilon=1e-6, use_bias=center, use_scale=scale).apply(variables, x)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_layer_norm_defaults_and_epsilon():
  x = _normal((4, 6))
  variables = tl.LayerNorm().init(KEY, x)
  params = nn.unbox(variables)["params"]
  np.testing.assert_array_equal(params["scale"], 1.0)
  np.testing.assert_array_equal(params["bias"], 0.0)
  y = tl.LayerNorm().apply(variables, x)
  np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(-1), 1.0, rtol=1e-4)
  big = tl.LayerNorm(epsilon=10.0).apply(variables, x)
  expected = nn.LayerNorm(epsilon=10.0).apply(nn.unbox(variables), x)
  np.testing.assert_allclose(big, expected, rtol=1e-5, atol=1e-6)


def test_layer_norm_grads():
  x = _normal((2, 5))
  variables = _randomise(tl.LayerNorm().init(KEY, x))
  check_grads(lambda p, x: tl.LayerNorm().apply({"params": p}, x), (variables["params"], x),
              order=2, modes=("rev",), atol=1e-2, rtol=1e-2)


@pytest.mark.usefixtures("logical_axes")
def test_layer_norm_axes_and_override():
  x = jnp.ones((2, 4))
  assert nn.get_partition_spec(tl.LayerNorm().init(KEY, x))["params"] == {
      "scale": P("embed"), "bias": P("embed")}
  plain = tl.LayerNorm(param_axes=None).init(KEY, x)["params"]
  assert all(isinstance(v, jax.Array) for v in plain.values())


def test_layer_norm_mixed_precision():
  x = _normal((2, 8))
  variables = tl.LayerNorm().init(KEY, x)
  y16 = tl.LayerNorm(dtype=jnp.bfloat16).apply(variables, x)
  assert y16.dtype == jnp.bfloat16
  assert nn.unbox(variables)["params"]["scale"].dtype == jnp.float32
  np.testing.assert_allclose(y16.astype(jnp.float32), tl.LayerNorm().apply(variables, x),
                             atol=3e-2)
  # bf16 inputs with float32 parameters promote to float32, statistics in float32.
  assert tl.LayerNorm().apply(variables, x.astype(jnp.bfloat16)).dtype == jnp.float32


@pytest.mark.parametrize("jit", [False, True])
def test_layer_norm_wrong_width_is_layer_error(jit):
  model = tl.Serial(tl.Dense(4), tl.LayerNorm())
  variables = model.init(KEY, jnp.ones((2, 3)))
  variables["params"]["layers_1"] = tl.LayerNorm().init(KEY, jnp.ones((2, 6)))["params"]
  apply = jax.jit(model.apply) if jit else model.apply
  with pytest.raises(tl.LayerError) as info:
    apply(variables, jnp.ones((2, 3)))
  message = str(info.value)
  assert message.startswith("Serial[1] > LayerNorm: ValueError") and "f32[2,4]" in message
  assert "(6,)" in message


# ------------------------------------------------------------------------------------------------
# BatchNorm
# ------------------------------------------------------------------------------------------------


def test_batch_norm_train_matches_flax_and_updates_stats():
  x = _normal((4, 3, 3, 5))
  layer = tl.BatchNorm()
  variables = layer.init(KEY, x)
  assert jax.tree.map(jnp.shape, nn.unbox(variables)) == {
      "params": {"scale": (5,), "bias": (5,)},
      "batch_stats": {"mean": (5,), "var": (5,), "n_batches": ()}}
  np.testing.assert_array_equal(variables["batch_stats"]["mean"], 0.0)  # init does not update
  np.testing.assert_array_equal(variables["batch_stats"]["var"], 1.0)
  variables = _randomise(variables)
  y, updates = layer.apply(variables, x, mutable=["batch_stats"])
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.999, epsilon=1e-5)
  expected, flax_updates = flax_bn.apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
  for name in ("mean", "var"):
    np.testing.assert_allclose(updates["batch_stats"][name], flax_updates["batch_stats"][name],
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.001 * x.mean((0, 1, 2)),
                             rtol=1e-4, atol=1e-7)


def test_batch_norm_immutable_stats_still_use_batch_statistics():
  x = _normal((4, 3, 3, 5))
  layer = tl.BatchNorm()
  variables = layer.init(KEY, x)
  y = layer.apply(variables, x)  # batch_stats not mutable: no update, no error
  y2, _ = layer.apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y, y2, rtol=1e-6)
  np.testing.assert_allclose(y.mean((0, 1, 2)), 0.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["eval", "predict"])
def test_batch_norm_eval_uses_running_stats(mode):
  x = _normal((4, 3, 3, 5))
  model = tl.Serial(tl.Conv(5, (1, 1)), tl.BatchNorm(momentum=0.5))
  variables = model.init(KEY, x)
  _, updates = model.apply(variables, x, mutable=["batch_stats"])
  variables = {**variables, **updates}
  eval_model = tl.with_mode(model, mode)
  y = jax.jit(eval_model.apply)(variables, x)
  stats = variables["batch_stats"]["layers_1"]
  h = tl.Conv(5, (1, 1)).apply({"params": variables["params"]["layers_0"]}, x)
  expected = (np.asarray(h) - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
  flax_eval = nn.BatchNorm(use_running_average=True, epsilon=1e-5)
  flax_y = flax_eval.apply({"params": nn.unbox(variables["params"]["layers_1"]),
                            "batch_stats": stats}, h)
  np.testing.assert_allclose(y, flax_y, rtol=1e-5, atol=1e-5)
  # Eval never touches the statistics, even when the collection is mutable.
  _, same = eval_model.apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_array_equal(same["batch_stats"]["layers_1"]["mean"], stats["mean"])


@pytest.mark.usefixtures("logical_axes")
def test_batch_norm_other_axes():
  x = _normal((6, 4, 3))
  variables = tl.BatchNorm(axis=(0, 1)).init(KEY, x)
  y = tl.BatchNorm(axis=(0, 1)).apply(variables, x)
  np.testing.assert_allclose(y.mean((0, 1)), 0.0, atol=1e-5)
  per_position = tl.BatchNorm(axis=(0,))
  variables = per_position.init(KEY, x)
  assert nn.unbox(variables)["params"]["scale"].shape == (4, 3)
  assert nn.get_partition_spec(variables)["params"]["scale"] == P(None, "embed")
  np.testing.assert_allclose(per_position.apply(variables, x).mean(0), 0.0, atol=1e-5)
  assert tl.BatchNorm(axis=0).axis == (0,)


def test_batch_norm_errors():
  with pytest.raises(tl.LayerError, match=r"BatchNorm: ValueError: .*BatchNorm\(axis=\(0, 1, 2\)\)"
                     r".*rank 2 \(f32\[3,5\]\)"):
    tl.BatchNorm().init(KEY, jnp.ones((3, 5)))
  with pytest.raises(ValueError, match="distinct"):
    tl.BatchNorm(axis=(0, 0))
  with pytest.raises(ValueError, match="mode"):
    tl.BatchNorm(mode="test")
  variables = tl.BatchNorm().init(KEY, jnp.ones((2, 2, 2, 3)))
  with pytest.raises(tl.LayerError, match=r"f32\[2,2,2,4\].*'scale' has shape \(3,\)"):
    tl.BatchNorm().apply(variables, jnp.ones((2, 2, 2, 4)), mutable=["batch_stats"])


def test_batch_norm_mixed_precision_and_grads():
  x = _normal((4, 2, 2, 3))
  variables = tl.BatchNorm().init(KEY, x)
  y = tl.BatchNorm(dtype=jnp.bfloat16).apply(variables, x.astype(jnp.bfloat16))
  assert y.dtype == jnp.bfloat16
  params = nn.unbox(variables)["params"]
  check_grads(lambda p: tl.BatchNorm().apply({**variables, "params": p}, x), (params,),
              order=1, modes=("rev",))


class NormalizationVariantsTest(LayerVariantsTest):
  """Normalization layers give the same results with and without jit."""

  __test__ = True
  _x = jax.random.normal(jax.random.PRNGKey(3), (4, 6))
  CASES = (
      (tl.LayerNorm(), _x, lambda x: (x - x.mean(-1, keepdims=True))
       / jnp.sqrt(x.var(-1, keepdims=True) + 1e-6)),
      (tl.BatchNorm(axis=(0,), mode="eval"), _x, None),
  )
  BAD = ((tl.LayerNorm(), _x, jnp.ones((4, 5))),)
