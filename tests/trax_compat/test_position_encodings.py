"""Trax's `trax/layers/research/position_encodings_test.py`, translated to declax.

Test names, parameters and assertions are Trax's. Linen changes only: `init(rng, x)` /
`apply(variables, x, rngs=...)` replace `init(x)` / `encoding(x)`, and Trax's stateful
predict-mode calls become `apply(..., mutable=['cache'])` with the updated cache fed back.
Trax's `InfinitePositionalEncoding` draws its affine phase from the layer's fixed rng, so its
predict outputs are not compared (`is_random`); declax's uses phase 0 outside training.
"""

import functools

import jax
import numpy as np
import pytest

import declax.layers as tl

ENCODINGS = {
    "infinite": tl.InfinitePositionalEncoding,
    "infinite_affine_false": functools.partial(tl.InfinitePositionalEncoding, affine=False),
    "time_bin": functools.partial(tl.TimeBinPositionalEncoding, time_bin_length=5),
}
RNGS = {"dropout": jax.random.PRNGKey(7)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENCODINGS))
@pytest.mark.parametrize("n,t,c", [
    (1, 100, 8),  # typical
    (1, 1, 8),  # short
    (1, 100, 1),  # narrow
    (2, 100, 8),  # batched
])
def test_training(name, n, t, c):
  encoding = ENCODINGS[name]()
  input_ntc = np.random.randn(n, t, c)
  variables = encoding.init(jax.random.PRNGKey(0), input_ntc)
  output_ntc = encoding.apply(variables, input_ntc, rngs=RNGS)
  assert output_ntc.shape == input_ntc.shape
  assert np.not_equal(output_ntc, input_ntc).any()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ENCODINGS))
@pytest.mark.parametrize("n,t,c", [
    (1, 100, 8),  # typical
    (1, 100, 1),  # narrow
    (2, 100, 8),  # batched
])
def test_inference(name, n, t, c):
  # Get the eval mode outputs:
  encoding = ENCODINGS[name](mode="eval")
  input_ntc = np.random.randn(n, t, c)
  rng = jax.random.PRNGKey(1234)
  variables = encoding.init(rng, input_ntc)
  output_ntc = encoding.apply(variables, input_ntc)

  is_random = name == "infinite"

  # Get the predict mode outputs:
  encoding_pred = ENCODINGS[name](mode="predict")
  state = {**variables, **encoding_pred.init(rng, input_ntc[:, 0:1, :])}

  def call(state, x):
    y, updates = encoding_pred.apply(state, x, mutable=["cache"])
    return y, {**state, **updates}

  output_ntc0, state = call(state, input_ntc[:, 0:1, :])
  if not is_random:
    np.testing.assert_allclose(output_ntc0, output_ntc[:, 0:1, :], atol=1e-4)

  output_ntc1, state = call(state, input_ntc[:, 1:2, :])
  if not is_random:
    np.testing.assert_allclose(output_ntc1, output_ntc[:, 1:2, :], atol=1e-4)

  output_ntc2, state = call(state, input_ntc[:, 2:3, :])
  if not is_random:
    np.testing.assert_allclose(output_ntc2, output_ntc[:, 2:3, :], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("n,t,c", [
    (1, 100, 8),  # typical
    (1, 1, 8),  # short
    (2, 100, 8),  # batched
])
def test_sincos_training(n, t, c):
  # Trax's SinCosEncodingsTest.test_training.
  encoding = tl.SinCosPositionalEncoding()
  input_ntc = np.random.randn(n, t, c)
  variables = encoding.init(jax.random.PRNGKey(0), input_ntc)
  output_ntc = encoding.apply(variables, input_ntc, rngs=RNGS)
  assert output_ntc.shape == input_ntc.shape
