"""Trax's `trax/layers/core_test.py`, translated one for one (same names and assertions).

Trax's `layer(x, weights=w)` becomes `layer.apply({'params': w}, x)`; Trax-style initializers
`f(shape, rng)` become Flax's `f(key, shape, dtype)`.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from tests.trax_compat.trax_shim import init, init_apply, weights

# -- DenseTest -----------------------------------------------------------------------------------


def test_dense_call_before_init_raises_error():
  with pytest.raises(tl.LayerError):
    tl.Dense(5).apply({}, np.array([1, 2, 3]))


def test_dense_call_uses_and_caches_supplied_weights():
  layer = tl.Dense(4)
  x = np.array([2, 3])
  variables = init(layer, x)
  w_init, b_init = weights(variables)["kernel"], weights(variables)["bias"]
  w = np.array([[10000, 20000, 30000, 40000], [100, 200, 100, 200]])
  b = np.array([9, 8, 7, 6])
  y = layer.apply({"params": {"kernel": w, "bias": b}}, x)
  assert y.tolist() == [20309, 40608, 60307, 80606]
  assert w.tolist() != w_init.tolist()
  assert b.tolist() != b_init.tolist()
  # ... and the initial variables are untouched (Linen never stores weights in the layer).
  assert weights(variables)["kernel"].tolist() != w.tolist()


def test_dense_separate_instances_have_separate_weights():
  model = tl.Serial(tl.Dense(5), tl.Dense(5))
  params = weights(init(model, np.array([1, 2, 3, 4, 5])))
  w0, b0 = params["layers_0"]["kernel"], params["layers_0"]["bias"]
  w1, b1 = params["layers_1"]["kernel"], params["layers_1"]["bias"]
  assert w0.tolist() != w1.tolist()
  assert b0.tolist() != b1.tolist()


def test_dense_shared_instance_means_shared_weights():
  layer = tl.Dense(5)
  params = weights(init(tl.Serial(layer, layer), np.array([1, 2, 3, 4, 5])))
  assert list(params) == ["layers_0"]


def test_dense_call_no_bias():
  layer = tl.Dense(4, use_bias=False)
  x = np.array([2, 5, 3])
  w = np.array([[100, 200, 300, 400], [10, 10, 10, 10], [1, 2, 1, 2]])
  assert layer.apply({"params": {"kernel": w}}, x).tolist() == [253, 456, 653, 856]


def test_dense_new_weights_use_bias():
  params = weights(init(tl.Dense(4), np.array([1, 2])))
  assert len(params) == 2
  assert params["kernel"].shape == (2, 4)
  assert params["bias"].shape == (4,)


def test_dense_new_weights_no_bias():
  assert weights(init(tl.Dense(4, use_bias=False), np.array([1, 2])))["kernel"].shape == (2, 4)


def test_dense_init_twice_weights_same_shape():
  layer = tl.Dense(4, use_bias=False)
  x = np.array([1, 2])
  w1, w2 = weights(init(layer, x))["kernel"], weights(init(layer, x))["kernel"]
  assert w1.shape == (2, 4) and w2.shape == (2, 4)


def test_dense_save_to_file_and_init_to_file(tmp_path):
  # Trax's save_to_file / init_from_file for a layer: flax.serialization on its variables.
  layer1, layer2 = tl.Dense(4, use_bias=False), tl.Dense(4, use_bias=False)
  x = np.array([1, 2])
  v1 = init(layer1, x)
  path = tmp_path / "dense_weights"
  path.write_bytes(flax.serialization.to_bytes(v1))
  template = jax.eval_shape(lambda: layer2.init(jax.random.PRNGKey(7), x))
  v2 = flax.serialization.from_bytes(template, path.read_bytes())
  w1, w2 = weights(v1)["kernel"], weights(v2)["kernel"]
  assert w1.shape == (2, 4) and w2.shape == (2, 4)
  assert w1.tolist() == np.asarray(w2).tolist()


# -- EmbeddingTest -------------------------------------------------------------------------------


def test_embedding_forward():
  y = init_apply(tl.Embedding(10, 3), np.array([2, 3, 5, 3, 2]))
  assert y.shape == (5, 3)
  assert y[0].tolist() != y[1].tolist()
  assert y[0].tolist() != y[2].tolist()
  assert y[1].tolist() != y[2].tolist()
  assert y[0].tolist() == y[4].tolist()
  assert y[1].tolist() == y[3].tolist()


def test_embedding_negative_inputs_clip_to_zero():
  y = init_apply(tl.Embedding(10, 3), np.array([0, 2, 3, -2, -3]))
  assert y[0].tolist() != y[1].tolist()
  assert y[0].tolist() != y[2].tolist()
  assert y[0].tolist() == y[3].tolist()
  assert y[0].tolist() == y[4].tolist()


def test_embedding_large_inputs_clip_to_upper_bound():
  y = init_apply(tl.Embedding(10, 3), np.array([2, 3, 9, 10, 20]))
  assert y[2].tolist() != y[0].tolist()
  assert y[2].tolist() != y[1].tolist()
  assert y[2].tolist() == y[3].tolist()
  assert y[2].tolist() == y[4].tolist()


def test_embedding_new_weights():
  w = weights(init(tl.Embedding(20, 5), np.array([0])))["embedding"]
  assert w.shape == (20, 5)
  assert np.abs(np.mean(w)) < 0.4


def test_embedding_explicit_kernel_initializer():
  def f(key, shape, dtype=jnp.float32):  # Flax's initializer signature
    del key
    return jnp.arange(np.prod(shape), dtype=dtype).reshape(shape)

  y = init_apply(tl.Embedding(5, 2, kernel_initializer=f), np.array([0, 1, 2, 3, 4]))
  assert y.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


# -- DropoutTest ---------------------------------------------------------------------------------


def test_dropout_call_in_train_mode():
  y = init_apply(tl.Dropout(rate=0.1, mode="train"), np.ones((2, 5, 1000)))
  assert y.shape == (2, 5, 1000)
  assert np.abs(np.count_nonzero(y) - 9000) < 4 * 30


def test_dropout_call_in_eval_mode_does_no_dropout():
  y = init_apply(tl.Dropout(rate=0.1, mode="eval"), np.ones((2, 5, 1000)))
  assert np.count_nonzero(y) == 10_000


def test_dropout_new_weights():
  assert not weights(init(tl.Dropout(rate=0.1, mode="train"), np.ones(3)))


# -- WeightsTest ---------------------------------------------------------------------------------


def test_weights_simple():
  y = init_apply(tl.Weights(lambda shape, rng: jnp.zeros(shape, dtype=jnp.float32)), ())
  assert y.tolist() == 0.0


def test_weights_shape():
  assert init_apply(tl.Weights(jax.nn.initializers.normal(), (5, 10, 3)), ()).shape == (5, 10, 3)


def test_weights_simple_custom_initializer():
  y = init_apply(tl.Weights(jax.nn.initializers.normal()), ())
  assert y.shape == ()
  assert y.tolist() != 0.0


def test_weights_custom_initializer_shape():
  y = init_apply(tl.Weights(lambda shape, rng: jnp.zeros(shape, dtype=jnp.float32), (2, 2)), ())
  assert y.tolist() == [[0.0, 0.0], [0.0, 0.0]]
  y = init_apply(tl.Weights(jax.nn.initializers.normal(), (2, 2)), ())
  assert y.shape == (2, 2)
  assert y.tolist() != [[0.0, 0.0], [0.0, 0.0]]


# -- SummaryScalarTest, RandomUniformTest --------------------------------------------------------


def test_summary_scalar_passes():
  x = np.array([[3.0, 5.0], [2.0, 6.0]])
  y, state = init_apply(tl.SummaryScalar("test"), x, mutable=["summaries"])
  assert y.tolist() == [[3.0, 5.0], [2.0, 6.0]]
  assert state["summaries"]["summary_test"].tolist() == 4.0


def test_random_uniform_simple():
  y = init_apply(tl.RandomUniform(), ())
  assert y.shape == ()
  assert 0.0 <= y <= 1.0


def test_random_uniform_shape():
  assert init_apply(tl.RandomUniform(shape=(5, 10, 3)), ()).shape == (5, 10, 3)


def test_random_uniform_simple_range():
  y = init_apply(tl.RandomUniform(1.0, 2.0, shape=(1000,)), ())
  assert y.shape == (1000,)
  assert 1.0 <= min(y.tolist()) <= 2.0
  assert 1.0 <= max(y.tolist()) <= 2.0
  assert min(y.tolist()) <= 1.5 <= max(y.tolist())


# -- LocallyConnected1dTest ----------------------------------------------------------------------

LC_X = np.array([[0, 1], [2, 3], [4, 5]], np.float32)


def test_locally_connected_shape_kernel1():
  for padding in ["WRAP", "SAME", "VALID"]:
    assert init_apply(tl.LocallyConnected1d(6, 1, padding=padding), LC_X).shape == (3, 6)


def test_locally_connected_shape_kernel3():
  for padding in ["WRAP", "SAME"]:
    assert init_apply(tl.LocallyConnected1d(6, 3, padding=padding), LC_X).shape == (3, 6)
  for padding in ["VALID"]:
    assert init_apply(tl.LocallyConnected1d(6, 3, padding=padding), LC_X).shape == (1, 6)


# -- FlattenTest ---------------------------------------------------------------------------------


def test_flatten_keep_default():
  assert init_apply(tl.Flatten(), np.ones((1, 2, 3, 4, 5))).shape == (1, 2 * 3 * 4 * 5)


def test_flatten_keep_3():
  assert init_apply(tl.Flatten(n_axes_to_keep=3), np.ones((1, 2, 3, 4, 5))).shape == (1, 2, 3,
                                                                                        20)


def test_flatten_keep_max_number():
  y = init_apply(tl.Flatten(n_axes_to_keep=4), np.ones((1, 2, 3, 4, 5)))
  assert y.shape == (1, 2, 3, 4, 5)


def test_flatten_keep_too_many_raises_error():
  with pytest.raises(tl.LayerError):
    init_apply(tl.Flatten(n_axes_to_keep=5), np.ones((1, 2, 3, 4, 5)))


# -- LogSoftmaxTest, SoftmaxTest, CoreFunctionsTest ----------------------------------------------

ACTIVATIONS = np.array([[2.0, 1.0, -10.0], [1.0, 1.0, -10.0]])


def test_log_softmax_call():
  np.testing.assert_allclose(init_apply(tl.LogSoftmax(), ACTIVATIONS),
                             [[-0.313, -1.313, -12.313], [-0.693, -0.693, -11.693]], atol=0.001)


def test_softmax_call():
  np.testing.assert_allclose(init_apply(tl.Softmax(), ACTIVATIONS),
                             [[0.731, 0.269, 0.00000449], [0.500, 0.500, 0.00000835]], atol=0.001)


def test_one_hot():
  target_distributions = tl.one_hot(np.array([2, 0, 1]), 5)
  assert np.asarray(target_distributions).tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0],
                                                       [1.0, 0.0, 0.0, 0.0, 0.0],
                                                       [0.0, 1.0, 0.0, 0.0, 0.0]]


def test_log_softmax():
  np.testing.assert_allclose(tl.log_softmax(ACTIVATIONS),
                             [[-0.313, -1.313, -12.313], [-0.693, -0.693, -11.693]], atol=0.001)


def test_log_gaussian_pdf():
  x = np.zeros((2, 5), dtype=np.float32)
  dsigma = np.eye(5)[None, :, :]
  sigma = np.concatenate([dsigma, 2 * dsigma], axis=0)
  prob = tl.log_gaussian_pdf(x, x, sigma)
  assert prob.shape == (2,)
  assert int(prob[0]) == -4
  assert int(prob[1]) == -6


def test_log_gaussian_diag_pdf():
  x = np.zeros((2, 5), dtype=np.float32)
  sigma = np.ones((5,))[None, :]
  sigma = np.concatenate([sigma, 2 * sigma], axis=0)
  prob = tl.log_gaussian_diag_pdf(x, x, sigma)
  assert prob.shape == (2,)
  assert int(prob[0]) == -4
  assert int(prob[1]) == -6


# -- StopGradientTest, MinMaxTest, ClassifierLayersTest ------------------------------------------

M = np.array([[3.0, 5.0], [2.0, 6.0]])


def test_stop_gradient_passes():
  y = init_apply(tl.StopGradient(), M)
  assert y.shape == (2, 2)
  assert y.tolist() == [[3.0, 5.0], [2.0, 6.0]]


def test_min():
  assert init_apply(tl.Min(), M).tolist() == [3.0, 2.0]
  assert init_apply(tl.Min(axis=0), M).tolist() == [2.0, 5.0]
  y = init_apply(tl.Min(axis=None), M)
  assert y.shape == () and y.tolist() == 2.0
  y = init_apply(tl.Min(keepdims=True), M)
  assert y.shape == (2, 1) and y.tolist() == [[3.0], [2.0]]


def test_max():
  assert init_apply(tl.Max(), M).tolist() == [5.0, 6.0]
  assert init_apply(tl.Max(axis=0), M).tolist() == [3.0, 6.0]
  y = init_apply(tl.Max(axis=None), M)
  assert y.shape == () and y.tolist() == 6.0
  y = init_apply(tl.Max(axis=0, keepdims=True), M)
  assert y.shape == (1, 2) and y.tolist() == [[3.0, 6.0]]


def test_threshold_to_binary():
  y = init_apply(tl.ThresholdToBinary(), np.array([0.30, 0.49, 0.50, 0.51, 0.70]))
  assert y.tolist() == [0, 0, 0, 1, 1]


def test_arg_max():
  x = np.array([[0.10, 0.90, 0.20, 0.80], [0.22, 0.88, 0.11, 0.99]])
  assert init_apply(tl.ArgMax(), x).tolist() == [1, 3]


