"""The layers added for Trax compatibility, checked against direct formulas (their bad inputs,
entries TL1-TL6 of docs/errors.md, are in tests/reliability/test_bad_trax_layers.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl

KEY = jax.random.PRNGKey(0)
X = jax.random.normal(KEY, (2, 5, 4))


def test_custom_backward_replaces_gradients_of_inputs_and_weights():
  class ScaledGrad(tl.Layer):
    has_backward = True

    @nn.compact
    def forward(self, x):
      return tl.Dense(3)(x)

    def backward(self, inputs, output, grad, weights, state, new_state, rng):
      assert set(weights) == {"Dense_0"}  # this layer's own params
      return 2 * inputs, jax.tree.map(jnp.ones_like, weights)

  model = tl.Serial(tl.Dense(4), ScaledGrad())
  variables = model.init(KEY, X)
  grads = nn.unbox(jax.grad(lambda v: model.apply(v, X).sum())(variables))["params"]
  np.testing.assert_array_equal(grads["layers_1"]["Dense_0"]["kernel"], 1.0)
  x_grad = jax.grad(lambda x: ScaledGrad().apply(
      {"params": variables["params"]["layers_1"]}, x).sum())(X)
  np.testing.assert_allclose(x_grad, 2 * X)
  assert tl.has_custom_backward(ScaledGrad()) and not tl.has_custom_backward(tl.Dense(3))


def test_top_level_attention_passes_extra_items_and_repr_is_the_header():
  layer = tl.CausalAttention(4, n_heads=2)
  variables = layer.init(KEY, X)
  y, extra = layer.apply(variables, (X, jnp.ones(3)))
  np.testing.assert_allclose(y, layer.apply(variables, X), rtol=1e-6)
  assert extra.shape == (3,)
  assert repr(tl.Dense(3)) == "Dense_3"
  assert repr(tl.Serial(tl.Dup())) == "Serial_out2[\n  Dup_out2\n]"


@pytest.mark.slow
def test_losses_follow_trax():
  loss = tl.BinaryCrossEntropyLoss().apply({}, (jnp.array([0.7]), jnp.array([1.0]), 1.0))
  np.testing.assert_allclose(loss, 0.3567, atol=1e-4)
  log_probs = jax.nn.log_softmax(jax.random.normal(KEY, (3, 4)))
  soft = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (3, 4)))
  expected = -jnp.mean(jnp.sum(soft * log_probs, -1))
  np.testing.assert_allclose(tl.CrossEntropyLoss().apply({}, (log_probs, soft, jnp.ones(3))),
                             expected, rtol=1e-6)
  ids = jnp.array([0, 3, 1])
  np.testing.assert_allclose(tl.CrossEntropyLoss().apply({}, (log_probs, ids.astype(float), 1.0)),
                             tl.CrossEntropyLoss().apply({}, (log_probs, ids, 1.0)), rtol=1e-6)
  assert tl.WeightedSum().apply({}, (jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0]))) == 1.0


def test_batch_norm_counts_training_batches_only():
  layer = tl.BatchNorm()
  variables = layer.init(KEY, X)
  _, state = layer.apply(variables, X, mutable=["batch_stats"])
  _, state = layer.apply({**variables, **state}, X, mutable=["batch_stats"])
  assert state["batch_stats"]["n_batches"] == 2
  _, same = tl.with_mode(layer, "eval").apply({**variables, **state}, X, mutable=["batch_stats"])
  assert same["batch_stats"]["n_batches"] == 2


def test_element_wise_layers():
  x = jnp.array([[0.5, 1.0, 2.0]])
  np.testing.assert_allclose(tl.Exp().apply({}, x), jnp.exp(x))
  np.testing.assert_allclose(tl.Log().apply({}, x), jnp.log(x))
  np.testing.assert_allclose(tl.LogSumExp().apply({}, x), jax.nn.logsumexp(x, -1, keepdims=True))
  layer = tl.ThresholdedLinearUnit()
  variables = layer.init(KEY, x)
  assert float(variables["params"]["threshold"]) == 0.0
  np.testing.assert_allclose(layer.apply({"params": {"threshold": 1.0}}, x), [[1.0, 1.0, 2.0]])


def test_utility_layers():
  x = jnp.ones((3, 2))
  layer = tl.Cache(tl.Dense(2))
  variables = layer.init(KEY, x)
  y1, cache = layer.apply(variables, x, mutable=["cache"])
  np.testing.assert_array_equal(layer.apply({**variables, **cache}, 5 * x), y1)
  assert len(tl.FlattenList(n_in=2, n_out=3).apply({}, (x, (x, x)))) == 3
  _, state = tl.SummaryImage("im", n_in=1, num_summaries=2).apply({}, x, mutable=["summaries"])
  assert sorted(state["summaries"]) == ["summary_im0", "summary_im1"]
  assert str(tl.PrintShape(2)) == "PrintShape_2_in2_out2"


@pytest.mark.slow
def test_locally_connected_matches_a_loop():
  layer = tl.LocallyConnected1d(3, 3, padding="VALID")
  x = jax.random.normal(KEY, (2, 6, 4))
  variables = layer.init(KEY, x)
  w, b = variables["params"]["kernel"], variables["params"]["bias"]
  expected = np.stack([sum(x[:, o + 2 - i] @ w[o + 2 - i, i] for i in range(3)) + b[None, o]
                       for o in range(4)], axis=1)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_causal_convolutions_do_not_see_the_future():
  for layer in (tl.CausalConv(5, kernel_width=3), tl.CausalDepthwiseConv(kernel_size=3)):
    variables = layer.init(KEY, X)
    changed = X.at[:, 3].add(10.0)
    diff = np.abs(layer.apply(variables, changed) - layer.apply(variables, X)).sum(-1)
    assert np.all(diff[:, :3] == 0) and np.all(diff[:, 3] > 0)


@pytest.mark.slow
def test_conv_transpose_matches_flax():
  layer = tl.ConvTranspose(3, (3, 3), strides=(2, 2))
  x = jax.random.normal(KEY, (2, 4, 4, 2))
  variables = layer.init(KEY, x)
  flax_y = nn.ConvTranspose(3, (3, 3), strides=(2, 2), padding="VALID").apply(variables, x)
  np.testing.assert_allclose(layer.apply(variables, x), flax_y, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_attention_parts_agree():
  q = jax.random.normal(KEY, (2, 5, 4))
  mask = jnp.ones((2, 1, 1, 5), bool).at[1, ..., 4].set(False)
  y, _ = tl.PureAttention(n_heads=2).apply({}, (q, q, q, mask))
  heads = tl.SplitIntoHeads(2, merged_batch_and_head=False).apply({}, q)
  dots = heads @ jnp.swapaxes(heads, -1, -2) / jnp.sqrt(2.0)
  weights = jax.nn.softmax(jnp.where(mask, dots, -1e9), -1)
  expected = tl.MergeHeads(2, merged_batch_and_head=False).apply({}, weights @ heads)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  split = tl.SplitIntoHeads(2).apply({}, q)
  np.testing.assert_array_equal(tl.MergeHeads(2).apply({}, split), q)
  assert tl.EncoderDecoderMask().apply({}, (q[:, :3], mask)).shape == (2, 1, 3, 5)


@pytest.mark.slow
def test_dot_product_causal_attention_predict_equals_eval():
  model = tl.ConfigurableAttention(tl.Dense(4), tl.Dense(4), tl.Dense(4), tl.Dense(4),
                                   tl.DotProductCausalAttention(max_inference_length=8),
                                   n_heads=2)
  variables = model.init(KEY, X)
  full = model.apply(variables, X)
  predict = tl.with_mode(model, "predict")
  cache = {"cache": predict.init(KEY, X[:, :1])["cache"]}
  for t in range(X.shape[1]):
    y, cache = predict.apply({"params": variables["params"], **cache}, X[:, t : t + 1],
                             mutable=["cache"])
    np.testing.assert_allclose(y[:, 0], full[:, t], rtol=1e-5, atol=1e-5)


def test_assert_shape_decorates_functions_and_classes():
  @tl.assert_shape("...d->...")
  def ReduceSum():  # noqa: N802
    return tl.Fn("ReduceSum", lambda x: jnp.sum(x, axis=-1))

  assert ReduceSum().apply({}, X).shape == (2, 5)
  assert str(ReduceSum()) == "ReduceSum"

  @tl.assert_shape("bld->bld")
  class Double(tl.Layer):
    def forward(self, x):
      return jnp.concatenate([x, x], axis=-1)

  with pytest.raises(tl.LayerError, match="ShapeAssertionError"):
    Double().apply({}, X)


@pytest.mark.slow
@pytest.mark.parametrize("layer, shape", [
    (tl.FilterResponseNorm(learn_epsilon=True), (2, 4, 4, 3)),
    (tl.CausalConv(5), (2, 5, 4)),
    (tl.CausalDepthwiseConv(), (2, 5, 4)),
    (tl.LocallyConnected1d(3, 3, padding="SAME"), (2, 5, 4)),
    (tl.ConvTranspose(3, (3, 3)), (2, 4, 4, 3)),
    (tl.SRU(4), (2, 5, 4)),
    (tl.GeneralGRUCell(lambda: tl.Dense(4)), (3, 4)),
], ids=lambda v: getattr(v, "label", None) or "x".join(map(str, v)))
def test_bfloat16_inputs_meet_float32_weights_as_in_trax(layer, shape):
  # Trax promotes with JAX's standard rules; declax casts explicitly (the tests run strict).
  x = jax.random.normal(KEY, shape).astype(jnp.bfloat16)
  variables = layer.init(KEY, x)
  assert layer.apply(variables, x, rngs={"dropout": KEY}).dtype == jnp.float32


def test_masks_and_weights_of_other_dtypes():
  mask = jnp.ones((2, 1, 1, 5), bool)
  out = tl.EncoderDecoderMask().apply({}, (X[:, :3], mask))
  assert out.dtype == jnp.float32 and out.shape == (2, 1, 3, 5)
  values, weights = jnp.array([1.0, 2.0], jnp.bfloat16), jnp.array([1, 0])
  assert tl.WeightedSum().apply({}, (values, weights)) == 1.0
  logits = jnp.array([[[2.0, 0.0], [0.0, 2.0]]])
  assert tl.WeightedFScore().apply({}, (logits, jnp.array([[0, 1]]))) == 1.0


@pytest.mark.parametrize("layer, inputs, message", [
    (tl.ConvTranspose(3, (3, 3)), jnp.ones((4, 4, 2)), r"assert_shape.*\(batch, 2 spatial axes"),
    (tl.FilterResponseNorm(), jnp.ones((4, 2)), r"assert_shape.*\(batch, spatial\.\.\., channels"),
    (tl.LocallyConnected1d(3, 3), jnp.ones(4), r"assert_shape.*\(\.\.\., length, d\)"),
    (tl.SplitIntoHeads(3), jnp.ones((2, 5, 4)), r"assert_is_divisible.*\(4\) is not a multiple"),
    (tl.MergeHeads(3), jnp.ones((4, 5, 2)), r"assert_is_divisible.*leading dimension \(4\)"),
    (tl.EncoderDecoderMask(), (jnp.ones((2, 3)), jnp.ones((2, 1, 1, 3))), r"assert_rank.*d_model"),
], ids=["ConvTranspose", "FilterResponseNorm", "LocallyConnected1d", "SplitIntoHeads",
        "MergeHeads", "EncoderDecoderMask"])
def test_contracts_are_checked_with_chex_before_the_layer_runs(layer, inputs, message):
  with pytest.raises(tl.LayerError, match=f"ValueError: \\[Chex\\] Assertion {message}"):
    layer.init(KEY, inputs)
