"""Tests for declax.layers.activations against jax.nn and Trax's formulas."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import declax.layers as tl
from declax.layers import activations
from tests.layers.jit_variants import LayerVariantsTest

X = jnp.linspace(-3.0, 3.0, 24).reshape(2, 3, 4)

CASES = [
    (tl.Relu(), lambda x: jnp.maximum(x, 0)),
    (tl.ParametricRelu(a=2.0), lambda x: jnp.maximum(2 * x, 0)),
    (tl.LeakyRelu(), lambda x: jnp.where(x >= 0, x, 0.01 * x)),
    (tl.LeakyRelu(a=0.2), lambda x: jnp.where(x >= 0, x, 0.2 * x)),
    (tl.Elu(), lambda x: jnp.where(x > 0, x, jnp.expm1(x))),
    (tl.Elu(a=0.5), lambda x: jnp.where(x > 0, x, 0.5 * jnp.expm1(x))),
    (tl.Selu(), jax.nn.selu),
    (tl.Selu(alpha=1.0, lmbda=2.0), lambda x: 2.0 * jnp.where(x > 0, x, jnp.expm1(x))),
    (tl.Gelu(), lambda x: x * 0.5 * (1.0 + jax.scipy.special.erf(x / jnp.sqrt(2.0)))),
    (tl.FastGelu(),
     lambda x: 0.5 * x * (1 + jnp.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x)))),
    (tl.Sigmoid(), lambda x: 1 / (1 + jnp.exp(-x))),
    (tl.Tanh(), jnp.tanh),
    (tl.HardTanh(), lambda x: jnp.clip(x, -1, 1)),
    (tl.Softplus(), lambda x: jnp.logaddexp(x, 0.0)),
    (tl.Swish(), lambda x: x * jax.nn.sigmoid(x)),
    (tl.Softmax(), lambda x: jnp.exp(x) / jnp.exp(x).sum(-1, keepdims=True)),
    (tl.Softmax(axis=0), lambda x: jnp.exp(x) / jnp.exp(x).sum(0, keepdims=True)),
    (tl.LogSoftmax(), lambda x: x - jax.scipy.special.logsumexp(x, -1, keepdims=True)),
    (tl.LogSoftmax(axis=1), lambda x: x - jax.scipy.special.logsumexp(x, 1, keepdims=True)),
    (tl.Glu(), lambda x: x[..., :2] * jax.nn.sigmoid(x[..., 2:])),
    (tl.Glu(axis=0), lambda x: x[:1] * jax.nn.sigmoid(x[1:])),
]


@pytest.mark.parametrize("layer, reference", CASES,
                         ids=[f"{type(c[0]).__name__}{i}" for i, c in enumerate(CASES)])
def test_matches_reference(layer, reference):
  assert layer.init(jax.random.PRNGKey(0), X) == {}
  np.testing.assert_allclose(layer.apply({}, X), reference(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [c[0] for c in CASES if not isinstance(c[0], tl.Glu)],
                         ids=str)
def test_keeps_shape_and_dtype(layer):
  x = X.astype(jnp.bfloat16)
  y = layer.apply({}, x)
  assert y.shape == x.shape and y.dtype == jnp.bfloat16


def test_grads():
  for layer in (tl.Gelu(), tl.Softmax(), tl.Selu(), tl.Glu()):
    check_grads(lambda x, layer=layer: layer.apply({}, x), (X[0] + 0.01,), order=1,
                modes=("rev",), atol=1e-2, rtol=1e-2)


def test_printing_and_classes():
  names = {str(cls()) for cls in (getattr(tl, n) for n in activations.__all__)}
  assert names == set(activations.__all__)
  assert str(tl.Relu()) == "Relu" and str(tl.LeakyRelu(a=0.3)) == "LeakyRelu"
  assert str(tl.Serial(tl.Dense(4), tl.Relu())) == "Serial[\n  Dense_4\n  Relu\n]"
  assert str(tl.Relu(name="Act")) == "Act"
  for name in activations.__all__:
    cls = getattr(tl, name)
    assert isinstance(cls, type) and issubclass(cls, tl.Layer)
    assert cls.__module__ == "declax.layers.activations" and cls.__name__ == name
    assert cls.__doc__ and cls.__doc__.strip()
  assert isinstance(tl.Relu(), tl.Relu) and not isinstance(tl.Relu(), tl.Tanh)


def test_trax_argument_names():
  def fields(cls):
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if name not in ("parent", "name", "origin")}

  assert fields(tl.Relu) == {}
  assert fields(tl.LeakyRelu) == {"a": 0.01}
  assert fields(tl.Elu) == {"a": 1.0}
  assert fields(tl.ParametricRelu) == {"a": 1.0}
  assert set(fields(tl.Selu)) == {"alpha", "lmbda"}
  assert fields(tl.Softmax) == {"axis": -1} and fields(tl.LogSoftmax) == {"axis": -1}
  assert tl.LeakyRelu(0.3).a == 0.3  # positional, like Trax


def test_errors_name_the_layer():
  with pytest.raises(tl.LayerError, match=r"Serial\[1\] > Glu: ValueError.*f32\[2,5\]"):
    tl.Serial(tl.Dense(5), tl.Glu()).init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
  with pytest.raises(tl.LayerError, match=r"Relu: ValueError: Relu got 2 input"):
    tl.Relu().apply({}, (X, X))


def test_under_jit_and_with_mode():
  model = tl.Serial(tl.Dense(4), tl.Gelu(), tl.Dense(2), tl.LogSoftmax())
  variables = model.init(jax.random.PRNGKey(0), X)
  y = jax.jit(model.apply)(variables, X)
  np.testing.assert_allclose(jnp.exp(y).sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(tl.with_mode(model, "eval").apply(variables, X), y, rtol=1e-6)


class ActivationVariantsTest(LayerVariantsTest):
  """Activations give the same results with and without jit."""

  __test__ = True
  _x = jnp.linspace(-3.0, 3.0, 12).reshape(2, 6)
  CASES = (
      (tl.Relu(), _x, jax.nn.relu),
      (tl.LeakyRelu(a=0.2), _x, lambda x: jax.nn.leaky_relu(x, 0.2)),
      (tl.Gelu(), _x, lambda x: jax.nn.gelu(x, approximate=False)),
      (tl.Tanh(), _x, jnp.tanh),
      (tl.LogSoftmax(), _x, jax.nn.log_softmax),
      (tl.Glu(), _x, jax.nn.glu),
  )
  BAD = ((tl.Glu(), _x, jnp.ones((2, 5))),)
