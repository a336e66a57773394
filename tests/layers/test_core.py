"""Tests for declax.layers.core: Dense, Embedding, Dropout, reshapes, sequence layers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import declax.layers as tl
from tests.layers.jit_variants import LayerVariantsTest

KEY = jax.random.PRNGKey(0)


def _normal(shape, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


# ------------------------------------------------------------------------------------------------
# Dense
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 4, 3)])
def test_dense_matches_flax(shape):
  x = _normal(shape)
  layer = tl.Dense(5)
  variables = layer.init(KEY, x)
  expected = nn.Dense(5).apply(nn.unbox(variables), x)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-6, atol=1e-6)
  assert layer.apply(variables, x).shape == shape[:-1] + (5,)


def test_dense_without_bias():
  x = _normal((2, 3))
  layer = tl.Dense(4, use_bias=False)
  variables = layer.init(KEY, x)
  assert set(variables["params"]) == {"kernel"}
  expected = nn.Dense(4, use_bias=False).apply(nn.unbox(variables), x)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-6)


def test_dense_grads():
  x = _normal((2, 3))
  layer = tl.Dense(4)
  params = nn.unbox(layer.init(KEY, x))["params"]
  check_grads(lambda p, x: layer.apply({"params": p}, x), (params, x), order=2,
              modes=("fwd", "rev"))


def test_dense_and_embedding_labels():
  assert str(tl.Dense(4)) == "Dense_4"
  assert str(tl.Embedding(8192, 256)) == "Embedding_8192_256"
  assert str(tl.Embedding(vocab_size=10, d_feature=3)) == "Embedding_10_3"
  assert str(tl.Serial(tl.Dense(8), tl.Dense(4))) == "Serial[\n  Dense_8\n  Dense_4\n]"
  assert str(tl.Dense(4, name="Head")) == "Head"


@pytest.mark.usefixtures("logical_axes")
def test_dense_param_axes_and_override():
  x = jnp.ones((2, 3))
  specs = nn.get_partition_spec(tl.Dense(4).init(KEY, x))["params"]
  assert specs["kernel"] == jax.sharding.PartitionSpec("embed", "mlp")
  assert specs["bias"] == jax.sharding.PartitionSpec("mlp")
  custom = tl.Dense(4, kernel_axes=("mlp", "embed"), bias_axes=("embed",)).init(KEY, x)
  assert nn.get_partition_spec(custom)["params"]["kernel"] == jax.sharding.PartitionSpec(
      "mlp", "embed")
  plain = tl.Dense(4, kernel_axes=None, bias_axes=None).init(KEY, x)["params"]
  assert all(isinstance(v, jax.Array) for v in plain.values())


def test_dense_initializers_follow_trax():
  variables = nn.unbox(tl.Dense(64).init(KEY, jnp.ones((1, 64))))["params"]
  assert np.abs(variables["kernel"]).max() <= np.sqrt(6 / 128) + 1e-6  # Glorot uniform bound
  assert np.abs(variables["bias"]).max() < 1e-4                       # normal(1e-6)
  zeros = tl.Dense(3, bias_initializer=nn.initializers.zeros).init(KEY, jnp.ones((1, 2)))
  assert not np.any(nn.unbox(zeros)["params"]["bias"])


def test_dense_mixed_precision():
  x = _normal((2, 3))
  layer = tl.Dense(4, dtype=jnp.bfloat16)
  variables = layer.init(KEY, x)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nn.unbox(variables)))
  y = layer.apply(variables, x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(jnp.float32), tl.Dense(4).apply(variables, x), atol=5e-2)
  assert tl.Dense(4).apply(variables, x.astype(jnp.bfloat16)).dtype == jnp.float32


@pytest.mark.parametrize("jit", [False, True])
def test_dense_wrong_last_dim_is_layer_error(jit):
  model = tl.Serial(tl.Dense(8), tl.Dense(4))
  variables = model.init(KEY, jnp.ones((2, 3)))
  apply = jax.jit(model.apply) if jit else model.apply
  with pytest.raises(tl.LayerError) as info:
    apply(variables, jnp.ones((2, 5)))
  message = str(info.value)
  assert message.startswith("Serial[0] > Dense_8: ValueError")
  assert "f32[2,5]" in message and "f32[3,8]" in message
  assert "test_core.py" in message  # where the layers were created


def test_dense_params_of_another_model_name_the_second_layer():
  model = tl.Serial(tl.Dense(8), tl.Dense(4))
  other = tl.Serial(tl.Dense(6), tl.Dense(4)).init(KEY, jnp.ones((2, 3)))
  variables = model.init(KEY, jnp.ones((2, 3)))
  variables = {"params": {"layers_0": variables["params"]["layers_0"],
                          "layers_1": other["params"]["layers_1"]}}
  with pytest.raises(tl.LayerError) as info:
    model.apply(variables, jnp.ones((2, 3)))
  message = str(info.value)
  assert message.startswith("Serial[1] > Dense_4")
  assert "f32[2,8]" in message and "f32[6,4]" in message


def test_dense_scalar_input_is_layer_error():
  with pytest.raises(tl.LayerError, match=r"Dense_4: ValueError.*scalar f32\[\]"):
    tl.Dense(4).init(KEY, jnp.float32(1.0))


# ------------------------------------------------------------------------------------------------
# Embedding
# ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("logical_axes")
def test_embedding_matches_flax_and_axes():
  ids = jnp.array([[1, 2, 9], [0, 0, 3]])
  layer = tl.Embedding(vocab_size=10, d_feature=4)
  variables = layer.init(KEY, ids)
  assert variables["params"]["embedding"].value.shape == (10, 4)
  assert nn.get_partition_spec(variables)["params"]["embedding"] == jax.sharding.PartitionSpec(
      "vocab", "embed")
  expected = nn.Embed(10, 4).apply(nn.unbox(variables), ids)
  np.testing.assert_array_equal(layer.apply(variables, ids), expected)
  plain = tl.Embedding(10, 4, kernel_axes=None).init(KEY, ids)["params"]["embedding"]
  assert isinstance(plain, jax.Array)


def test_embedding_init_is_trax_scaled_uniform():
  table = nn.unbox(tl.Embedding(100, 16).init(KEY, jnp.array([0])))["params"]["embedding"]
  assert np.abs(table).max() <= np.sqrt(3 / 16) + 1e-6
  assert np.abs(table).max() > 0.8 * np.sqrt(3 / 16)


def test_embedding_out_of_range_policies():
  ids = jnp.array([-1, 3, 10, 12])
  variables = tl.Embedding(10, 2).init(KEY, ids)
  table = nn.unbox(variables)["params"]["embedding"]
  clipped = tl.Embedding(10, 2).apply(variables, ids)
  np.testing.assert_array_equal(clipped, table[jnp.array([0, 3, 9, 9])])
  filled = tl.Embedding(10, 2, out_of_range="fill").apply(variables, ids)
  assert np.isnan(np.asarray(filled)[[0, 2, 3]]).all() and np.array_equal(filled[1], table[3])
  with pytest.raises(tl.LayerError, match=r"Embedding_10_2: ValueError: 3 id\(s\) outside"):
    tl.Embedding(10, 2, out_of_range="raise").apply(variables, ids)
  in_range = jnp.array([0, 9])
  np.testing.assert_array_equal(
      tl.Embedding(10, 2, out_of_range="raise").apply(variables, in_range), table[in_range])
  # Under jit the ids are not concrete: 'raise' falls back to NaN rows.
  traced = jax.jit(tl.Embedding(10, 2, out_of_range="raise").apply)(variables, ids)
  assert np.isnan(traced[0]).all() and not np.isnan(traced[1]).any()
  with pytest.raises(ValueError, match="out_of_range"):
    tl.Embedding(10, 2, out_of_range="wrap")


@pytest.mark.parametrize("jit", [False, True])
def test_embedding_float_ids_are_layer_error(jit):
  model = tl.Serial(tl.Embedding(10, 4), tl.Dense(2))
  variables = model.init(KEY, jnp.array([1, 2]))
  apply = jax.jit(model.apply) if jit else model.apply
  with pytest.raises(tl.LayerError) as info:
    apply(variables, jnp.array([1.0, 2.0]))
  message = str(info.value)
  assert "Serial[0] > Embedding_10_4: TypeError" in message
  assert "float32" in message and "f32[2]" in message
  assert isinstance(info.value.cause, TypeError)


def test_embedding_mixed_precision():
  ids = jnp.array([1, 2])
  layer = tl.Embedding(10, 4, dtype=jnp.bfloat16)
  variables = layer.init(KEY, ids)
  assert nn.unbox(variables)["params"]["embedding"].dtype == jnp.float32
  assert layer.apply(variables, ids).dtype == jnp.bfloat16


# ------------------------------------------------------------------------------------------------
# Dropout
# ------------------------------------------------------------------------------------------------


def test_dropout_matches_flax_and_modes():
  x = _normal((4, 5, 6))
  rngs = {"dropout": jax.random.PRNGKey(3)}
  layer = tl.Dropout(rate=0.4)
  assert layer.init(KEY, x) == {}  # one key is enough for init
  expected = nn.Dropout(0.4, deterministic=False).apply({}, x, rngs=rngs)
  np.testing.assert_array_equal(layer.apply({}, x, rngs=rngs), expected)
  shared = tl.Dropout(0.4, shared_axes=(1,)).apply({}, x, rngs=rngs)
  expected = nn.Dropout(0.4, broadcast_dims=(1,), deterministic=False).apply({}, x, rngs=rngs)
  np.testing.assert_array_equal(shared, expected)
  assert np.all((shared == 0).all(axis=1) | (shared != 0).all(axis=1))
  np.testing.assert_array_equal(tl.Dropout(0.4, mode="eval").apply({}, x), x)
  np.testing.assert_array_equal(tl.with_mode(layer, "predict").apply({}, x), x)
  np.testing.assert_array_equal(tl.Dropout().apply({}, x), x)  # rate 0: no rng needed
  np.testing.assert_array_equal(tl.Dropout(1.0).apply({}, x, rngs=rngs), jnp.zeros_like(x))


def test_dropout_arguments():
  with pytest.raises(ValueError, match="rate"):
    tl.Dropout(1.5)
  with pytest.raises(ValueError, match="mode"):
    tl.Dropout(0.1, mode="training")
  assert str(tl.Dropout(0.1)) == "Dropout"


def test_with_mode_eval_applies_train_variables():
  model = tl.Serial(tl.Embedding(10, 4), tl.Dropout(0.5), tl.Dense(3))
  ids = jnp.array([[1, 2, 3]])
  variables = model.init(KEY, ids)
  eval_model = tl.with_mode(model, "eval")
  y = eval_model.apply(variables, ids)
  np.testing.assert_array_equal(y, eval_model.apply(variables, ids))
  train_y = model.apply(variables, ids, rngs={"dropout": jax.random.PRNGKey(1)})
  assert not np.allclose(train_y, y)


# ------------------------------------------------------------------------------------------------
# Reshapes and reductions
# ------------------------------------------------------------------------------------------------


def test_flatten():
  x = jnp.ones((2, 3, 5, 7))
  assert tl.Flatten().apply({}, x).shape == (2, 105)
  assert tl.Flatten(n_axes_to_keep=2).apply({}, x).shape == (2, 3, 35)
  assert str(tl.Flatten()) == "Flatten_keep1" and str(tl.Flatten(2)) == "Flatten_keep2"
  with pytest.raises(tl.LayerError, match=r"Flatten_keep2: ValueError: .*rank \(2, f32\[2,3\]\)"):
    tl.Flatten(2).apply({}, jnp.ones((2, 3)))


def test_reductions():
  x = _normal((2, 3, 4))
  np.testing.assert_allclose(tl.Mean().apply({}, x), x.mean(-1), rtol=1e-6)
  np.testing.assert_allclose(tl.Mean(axis=1, keepdims=True).apply({}, x),
                             x.mean(1, keepdims=True), rtol=1e-6)
  np.testing.assert_allclose(tl.Sum().apply({}, x), x.sum(), rtol=1e-6)  # Trax: axis=None
  np.testing.assert_allclose(tl.Sum(axis=(0, 2)).apply({}, x), x.sum((0, 2)), rtol=1e-6)
  np.testing.assert_array_equal(tl.Max().apply({}, x), x.max(-1))
  np.testing.assert_array_equal(tl.Min(axis=0).apply({}, x), x.min(0))
  np.testing.assert_array_equal(tl.ArgMax().apply({}, x), x.argmax(-1))
  np.testing.assert_array_equal(tl.Negate().apply({}, x), -x)
  assert tl.ToFloat().apply({}, jnp.array([1, 2])).dtype == jnp.float32
  grad = jax.grad(lambda x: tl.StopGradient().apply({}, x).sum() + x.sum())(x)
  np.testing.assert_array_equal(grad, jnp.ones_like(x))
  assert [str(layer) for layer in (tl.Mean(), tl.Sum(), tl.Max(), tl.ArgMax())] == [
      "Mean", "Sum", "Max", "ArgMax"]


# ------------------------------------------------------------------------------------------------
# ShiftRight and PositionalEncoding
# ------------------------------------------------------------------------------------------------


def test_shift_right():
  ids = jnp.array([[1, 2, 3, 4], [5, 6, 7, 8]])
  np.testing.assert_array_equal(tl.ShiftRight().apply({}, ids), [[0, 1, 2, 3], [0, 5, 6, 7]])
  np.testing.assert_array_equal(tl.ShiftRight(n_positions=2).apply({}, ids),
                                [[0, 0, 1, 2], [0, 0, 5, 6]])
  x = _normal((2, 3, 4))
  shifted = tl.ShiftRight().apply({}, x)
  np.testing.assert_array_equal(shifted[:, 1:], x[:, :-1])
  np.testing.assert_array_equal(shifted[:, 0], 0)
  np.testing.assert_array_equal(tl.ShiftRight(mode="predict").apply({}, ids), ids)
  assert str(tl.ShiftRight()) == "ShiftRight(1)" and str(tl.ShiftRight(3)) == "ShiftRight(3)"


def _trax_sinusoids(max_len, d):
  pe = np.zeros((max_len, d), np.float32)
  position = np.arange(max_len)[:, None]
  div_term = np.exp(np.arange(0, d, 2) * -(np.log(10000.0) / d))
  pe[:, 0::2] = np.sin(position * div_term)
  pe[:, 1::2] = np.cos(position * div_term)
  return pe


def test_positional_encoding_values():
  x = _normal((2, 7, 6))
  layer = tl.PositionalEncoding(trainable=False, max_len=16)
  assert layer.init(KEY, x) == {}  # fixed encodings, no parameters
  y = layer.apply({}, x)
  np.testing.assert_allclose(y - x, np.broadcast_to(_trax_sinusoids(16, 6)[:7], (2, 7, 6)),
                             atol=1e-5)
  fixed = tl.PositionalEncoding(trainable=False)
  assert fixed.apply({}, x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
  with pytest.raises(tl.LayerError, match="exceeds max_len=4"):
    tl.PositionalEncoding(trainable=False, max_len=4).apply({}, x)
  with pytest.raises(tl.LayerError, match=r"\(batch, length, d_feature\)"):
    layer.apply({}, jnp.ones((7, 6)))


def test_positional_encoding_dropout_only_in_train():
  x = jnp.zeros((2, 5, 8))
  rngs = {"dropout": jax.random.PRNGKey(2)}
  plain = tl.PositionalEncoding(trainable=False).apply({}, x)
  dropped = tl.PositionalEncoding(trainable=False, dropout=0.5).apply({}, x, rngs=rngs)
  # The encodings (not the inputs) are dropped, one mask shared across batch and length.
  flax_dropout = nn.Dropout(0.5, broadcast_dims=(0, 1), deterministic=False)
  expected = flax_dropout.apply({}, plain[:1], rngs=rngs)
  np.testing.assert_allclose(dropped, np.broadcast_to(expected, x.shape), rtol=1e-6)
  assert (dropped == 0).any() and (dropped != plain).any()
  eval_layer = tl.PositionalEncoding(trainable=False, dropout=0.5, mode="eval")
  np.testing.assert_array_equal(eval_layer.apply({}, x),
                                plain)


def test_positional_encoding_predict_steps_through_positions():
  x = _normal((2, 5, 6))
  full = tl.PositionalEncoding(trainable=False, max_len=8).apply({}, x)
  layer = tl.PositionalEncoding(trainable=False, max_len=8, mode="predict")
  variables = layer.init(KEY, x[:, :1])
  assert int(variables["cache"]["position"]) == 0
  step = jax.jit(lambda v, x: layer.apply(v, x, mutable=["cache"]))
  outputs = []
  for t in range(5):
    y, variables = step(variables, x[:, t : t + 1])
    outputs.append(y)
  assert int(variables["cache"]["position"]) == 5
  np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), full, atol=1e-6)
  # Read-only cache: same output, position not advanced.
  y = layer.apply(variables, x[:, :1])
  np.testing.assert_allclose(y - x[:, :1], np.broadcast_to(_trax_sinusoids(8, 6)[5], (2, 1, 6)),
                             atol=1e-5)
  # A prefill of several positions advances by its length.
  _, updated = layer.apply(layer.init(KEY, x), x[:, :3], mutable=["cache"])
  assert int(updated["cache"]["position"]) == 3
  with pytest.raises(tl.LayerError, match="exceeds max_len=8"):
    layer.apply({"cache": {"position": jnp.int32(7)}}, x[:, :2], mutable=["cache"])


class CoreVariantsTest(LayerVariantsTest):
  """Core layers give the same results with and without jit."""

  __test__ = True
  _x = jnp.arange(24.0).reshape(2, 3, 4) / 10
  CASES = (
      (tl.Dense(5), _x, None),
      (tl.Embedding(10, 4), jnp.array([[1, 2, 9]]), None),
      (tl.Flatten(), _x, lambda x: x.reshape(2, 12)),
      (tl.Mean(axis=1), _x, lambda x: x.mean(1)),
      (tl.Sum(), _x, lambda x: x.sum()),
      (tl.ShiftRight(), _x, lambda x: jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :3]),
      (tl.PositionalEncoding(max_len=8), _x, None),
      (tl.ToFloat(), jnp.array([1, 2]), lambda x: x.astype(jnp.float32)),
  )
  BAD = (
      (tl.Dense(5), _x, jnp.ones((2, 3, 6))),
      (tl.Embedding(10, 4), jnp.array([1, 2]), jnp.array([1.0, 2.0])),
      (tl.PositionalEncoding(), _x, jnp.ones((2, 4))),
  )
