"""Position encodings: Trax's trained PositionalEncoding table, axial, fixed-base, sin-cos,
infinite, time-bin and rotary; predict mode steps through the positions of the full pass."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax
import declax.layers as tl
from declax.layers.position_encodings import AxialShapeError
from declax.layers.sequence import sinusoidal_encoding

KEY = jax.random.PRNGKey(0)


def _normal(shape, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _step_through(layer, predict_layer, x, rngs=None):
  """Outputs of `predict_layer` fed one position at a time, with `layer`'s parameters."""
  variables = layer.init(KEY, x)
  cache = predict_layer.init(KEY, x[:, :1]).get("cache", {})
  state = {**variables, "cache": cache}
  outputs = []
  for t in range(x.shape[1]):
    y, updates = predict_layer.apply(state, x[:, t:t + 1], mutable=["cache"], rngs=rngs)
    state = {**state, **updates}
    outputs.append(y)
  return variables, jnp.concatenate(outputs, axis=1)


@pytest.mark.slow
def test_positional_encoding_table_is_a_trained_weight():
  x = _normal((2, 7, 6))
  layer = tl.PositionalEncoding(max_len=16, mode="eval")
  params = nn.unbox(layer.init(KEY, x)["params"])
  assert params["weights"].shape == (16, 6)
  np.testing.assert_allclose(params["weights"], sinusoidal_encoding(jnp.arange(16), 6), atol=1e-6)
  np.testing.assert_allclose(layer.apply({"params": params}, x) - x,
                             np.broadcast_to(params["weights"][:7], x.shape), atol=1e-6)
  grad = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x) ** 2))(params)
  assert float(jnp.abs(grad["weights"][:7]).sum()) > 0 and not grad["weights"][7:].any()
  # d_feature: a smaller table projected by a learned matrix.
  small = nn.unbox(tl.PositionalEncoding(max_len=16, d_feature=4).init(KEY, x)["params"])
  assert small["weights"].shape == (16, 4) and small["ff"].shape == (4, 6)
  bf16 = nn.unbox(tl.PositionalEncoding(use_bfloat16=True).init(KEY, x)["params"])
  assert bf16["weights"].dtype == jnp.bfloat16


def test_positional_encoding_predict_and_random_start():
  x = _normal((2, 5, 6))
  layer = tl.PositionalEncoding(max_len=8, mode="eval")
  variables, stepped = _step_through(layer, tl.PositionalEncoding(max_len=8, mode="predict"), x)
  np.testing.assert_allclose(stepped, layer.apply(variables, x), atol=1e-6)
  shifted = tl.PositionalEncoding(max_len=8, start_from_zero_prob=0.0, max_offset_to_add=3)
  outs = {float(shifted.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(s)}).sum())
          for s in range(6)}
  assert len(outs) > 1


@pytest.mark.slow
def test_axial_encoding_shape_and_errors():
  x = _normal((2, 12, 10))
  layer = tl.AxialPositionalEncoding(shape=(3, 4), d_embs=(4, 6), mode="eval")
  params = nn.unbox(layer.init(KEY, x)["params"])
  assert params["ax_0"].shape == (3, 4) and params["ax_1"].shape == (4, 6)
  y = layer.apply({"params": params}, x) - x
  # Position 5 = (row 1, column 1): the concatenation of the two axes' vectors.
  np.testing.assert_allclose(y[0, 5], jnp.concatenate([params["ax_0"][1], params["ax_1"][1]]),
                             rtol=1e-6)
  np.testing.assert_allclose(layer.apply({"params": params}, x[:, :7]), y[:, :7] + x[:, :7],
                             rtol=1e-6)
  predict = tl.AxialPositionalEncoding(shape=(3, 4), d_embs=(4, 6), mode="predict")
  _, stepped = _step_through(layer, predict, x)
  np.testing.assert_allclose(stepped, y + x, atol=1e-6)
  with pytest.raises(tl.LayerError, match=r"sum\(d_embs\).*10 must equal the input depth 8"):
    layer.init(KEY, x[..., :8])
  with pytest.raises(tl.LayerError, match=r"13 exceeds prod\(shape=\(3, 4\)\) = 12"):
    layer.init(KEY, _normal((1, 13, 10)))
  with pytest.raises(AxialShapeError, match="same length"):
    tl.AxialPositionalEncoding(shape=(3, 4), d_embs=(10,))
  assert issubclass(AxialShapeError, declax.DeclaxError)


@pytest.mark.slow
@pytest.mark.parametrize("make", [
    lambda mode: tl.FixedBasePositionalEncoding(bases=(5, 7), n_digits=2, mode=mode),
    lambda mode: tl.SinCosPositionalEncoding(mode=mode),
    lambda mode: tl.InfinitePositionalEncoding(mode=mode),
    lambda mode: tl.InfinitePositionalEncoding(transform="diag", affine=False, mode=mode),
    lambda mode: tl.TimeBinPositionalEncoding(time_bin_length=3, mode=mode),
], ids=["fixed_base", "sincos", "infinite", "infinite_diag", "time_bin"])
def test_encodings_change_inputs_and_decode_step_by_step(make):
  x = _normal((2, 6, 8))
  rngs = {"dropout": jax.random.PRNGKey(5)}
  train = make("train")
  variables = train.init(KEY, x)
  y = train.apply(variables, x, rngs=rngs)
  assert y.shape == x.shape and bool(jnp.any(y != x))
  variables, stepped = _step_through(make("eval"), make("predict"), x)
  np.testing.assert_allclose(stepped, make("eval").apply(variables, x), atol=1e-5)


def test_rotate_keeps_norms_and_relative_positions():
  q = jnp.ones((1, 32, 16))
  rotated = tl.Rotate().apply({}, q)
  np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(q, axis=-1),
                             rtol=1e-5)
  dots = jnp.einsum("bnd,bmd->bnm", rotated, rotated)
  np.testing.assert_allclose(dots[0, 3, 5], dots[0, 10, 12], rtol=1e-4)  # shift-invariant
  assert str(tl.Rotate()) == "Rotate"
