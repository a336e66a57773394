"""Trax's `trax/layers/base_test.py`, translated one for one (same names and assertions).

Trax's `output_signature` / `weights_and_state_signature` are `jax.eval_shape` of `apply` /
`init`; `pure_fn(x, weights, state, rng)` is Linen's `apply`; `PureLayer(f)` is `Fn`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from tests.trax_compat.trax_shim import KEY, init, init_apply, not_applicable, weights

X = np.array([[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]])


def test_call_raises_error():
  with pytest.raises(tl.LayerError, match="NotImplementedError"):
    init_apply(tl.Layer(), X)


def test_set_weighs_raises_error():
  not_applicable("weight setters (layer.weights = ...): Linen layers hold no weights")


def test_forward_raises_error():
  with pytest.raises(NotImplementedError):
    tl.Layer().forward(X)


def test_init_returns_empty_weights_and_state():
  class Identity(tl.Layer):  # tl.Layer itself has no forward to trace in init
    def forward(self, x):
      return x
  variables = Identity().init(KEY, jnp.zeros((2, 5)))
  assert not weights(variables)
  assert not {k: v for k, v in variables.items() if k != "params"}


def test_output_signature_no_weights():
  shape_2_3_5 = jax.ShapeDtypeStruct((2, 3, 5), jnp.float32)
  layer = tl.Fn("2in1out", lambda x, y: x + y)
  assert jax.eval_shape(lambda s: layer.apply({}, s), (shape_2_3_5, shape_2_3_5)) == shape_2_3_5
  shape_5_7 = jax.ShapeDtypeStruct((5, 7), jnp.float32)
  layer = tl.Fn("1in3out", lambda x: (x, 2 * x, 3 * x), n_out=3)
  assert jax.eval_shape(lambda s: layer.apply({}, s), shape_5_7) == (shape_5_7,) * 3


def test_weights_and_state_signature():
  class MyLayer(tl.Layer):
    @nn.compact
    def forward(self, inputs):
      w = self.param("weights", jax.nn.initializers.zeros, (2, 3))
      s = self.variable("state", "s", jnp.ones, inputs.shape)
      return s.value[:2, :3] + w

  variables = jax.eval_shape(lambda x: MyLayer().init(KEY, x), jnp.zeros((3, 4)))
  assert variables["params"]["weights"].shape == (2, 3)
  assert variables["state"]["s"].shape == (3, 4)


def test_custom_name():
  layer = tl.Layer()
  assert "Layer" in str(layer)
  assert "CustomLayer" not in str(layer)
  assert "CustomLayer" in str(tl.Layer(name="CustomLayer"))


def test_custom_zero_grad():
  class IdWithZeroGrad(tl.Layer):
    def forward(self, x):
      return x

    @property
    def has_backward(self):
      return True

    def backward(self, inputs, output, grad, weights, state, new_state, rng):
      return (jnp.zeros_like(grad), ())

  layer = IdWithZeroGrad()
  random_input = jax.random.uniform(jax.random.PRNGKey(0), (9, 17), minval=-1.0, maxval=1.0)
  variables = init(layer, random_input)
  grad = jax.grad(lambda x: jnp.mean(layer.apply(variables, x)))(random_input)
  assert grad.shape == (9, 17)
  assert sum(sum(grad * grad)) == 0.0


def test_custom_id_grad():
  class IdWithIdGrad(tl.Layer):
    def forward(self, x):
      return x

    @property
    def has_backward(self):
      return True

    def backward(self, inputs, output, grad, weights, state, new_state, rng):
      return (inputs, ())

  layer = IdWithIdGrad()
  random_input = jax.random.uniform(jax.random.PRNGKey(0), (9, 17), minval=-1.0, maxval=1.0)
  variables = init(layer, random_input)
  grad = jax.grad(lambda x: jnp.mean(layer.apply(variables, x)))(random_input)
  assert grad.shape == (9, 17)
  np.testing.assert_allclose(sum(sum(grad)), sum(sum(random_input)), rtol=1e-6)


# -- PureLayerTest -------------------------------------------------------------------------------


def test_pure_layer_forward():
  layer = tl.Fn("", lambda x: 2 * x)  # Trax's PureLayer(f)
  assert layer.apply({"params": {}}, np.array([1, 2])).tolist() == [2, 4]
  assert layer.forward(np.array([3, 4])).tolist() == [6, 8]
  assert layer.apply({}, np.array([5, 6])).tolist() == [10, 12]  # Trax's pure_fn


# -- FnTest --------------------------------------------------------------------------------------
# Trax's messages say 'default arg' / 'keyword arg' / 'variable arg'; declax's say what to do
# instead (DESIGN.md errors), so the regexes match declax's wording.


def test_fn_bad_f_has_default_arg():
  with pytest.raises(ValueError, match="default value"):
    tl.Fn("", lambda x, sth=None: x)


def test_fn_bad_f_has_keyword_arg():
  with pytest.raises(ValueError, match=r"\*\*kwargs"):
    tl.Fn("", lambda x, **kwargs: x)


def test_fn_bad_f_has_variable_arg():
  with pytest.raises(ValueError, match=r"\*args"):
    tl.Fn("", lambda *args: args[0])


def test_fn_forward():
  layer = tl.Fn("SumAndMax", lambda x0, x1: (x0 + x1, jnp.maximum(x0, x1)), n_out=2)
  x0, x1 = np.array([1, 2, 3, 4, 5]), np.array([10, 20, 30, 40, 50])
  y0, y1 = layer.apply({}, (x0, x1))
  assert y0.tolist() == [11, 22, 33, 44, 55]
  assert y1.tolist() == [10, 20, 30, 40, 50]
  y2, y3 = layer.forward(x0, x1)
  assert y2.tolist() == [11, 22, 33, 44, 55]
  assert y3.tolist() == [10, 20, 30, 40, 50]
  (y4, y5), state = layer.apply({}, (x0, x1), mutable=True)  # Trax's pure_fn
  assert y4.tolist() == [11, 22, 33, 44, 55]
  assert y5.tolist() == [10, 20, 30, 40, 50]
  assert not state


def test_fn_weights_state():
  layer = tl.Fn("2in2out", lambda x, y: (x + y, jnp.concatenate([x, y], axis=0)), n_out=2)
  variables = init(layer, (np.ones(2), np.ones(2)))
  assert not weights(variables)
  assert not {k: v for k, v in variables.items() if k != "params"}
