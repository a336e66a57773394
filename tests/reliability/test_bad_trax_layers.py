"""Bad inputs to the layers added for Trax compatibility (catalogue entries TL*): a clear error
that names the layer and the argument or shape, raised as a `DeclaxError`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import declax.layers as tl
from declax.errors import DeclaxError
from tests.reliability.catalogue import CATALOGUE


def expect(entry: str, error: BaseException) -> None:
  # LayerError wraps failures while the model runs (a DeclaxError with the core refactor)
  assert isinstance(error, (DeclaxError, tl.LayerError))
  assert CATALOGUE[entry] in str(error), f"{entry}: {CATALOGUE[entry]!r} not in\n{error}"


def test_TL1_shapes_that_do_not_match_the_specification():
  with pytest.raises(tl.LayerError) as info:
    tl.AssertShape("aa").apply({}, jnp.ones((10, 5)))
  assert isinstance(info.value.cause, tl.ShapeAssertionError)
  expect("TL1", info.value)


def test_TL2_a_malformed_specification():
  with pytest.raises(tl.LayerError) as info:
    tl.AssertShape("b..c").apply({}, jnp.ones((2, 3, 4)))
  expect("TL2", info.value)
  with pytest.raises(tl.ShapeAssertionError, match="one '->'"):
    tl.AssertFunction("ab", tl.Relu())


def test_TL3_locally_connected_arguments():
  with pytest.raises(tl.LayerArgumentError) as info:
    tl.LocallyConnected1d(6, 2)
  expect("TL3", info.value)
  with pytest.raises(DeclaxError, match="padding must be 'VALID', 'SAME' or 'WRAP'"):
    tl.LocallyConnected1d(6, 3, padding="CIRCULAR")


def test_TL4_filter_response_norm_epsilon():
  with pytest.raises(tl.LayerArgumentError) as info:
    tl.FilterResponseNorm(init_epsilon=0.0)
  expect("TL4", info.value)


def test_TL5_backward_with_the_wrong_number_of_gradients():
  class Bad(tl.Layer):
    has_backward = True

    @property
    def n_in(self):
      return 2

    def forward(self, x, y):
      return x + y

    def backward(self, inputs, output, grad, weights, state, new_state, rng):
      return (grad,), ()

  with pytest.raises(DeclaxError) as info:
    jax.grad(lambda x: Bad().apply({}, (x, x)).sum())(jnp.ones(3))
  expect("TL5", info.value)


def test_TL6_inputs_of_the_wrong_rank():
  with pytest.raises(tl.LayerError) as info:
    tl.MakeZeroState().apply({}, jnp.ones((2, 3)))
  expect("TL6", info.value)
  with pytest.raises(tl.LayerError, match=r"expects inputs of shape \(batch, length, channels\)"):
    tl.CausalConv(4).init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
