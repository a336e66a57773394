"""Reversible layers: forward/reverse pairs, and ReversibleSerial's custom backward pass against
ordinary backpropagation (with dropout, under jit, nested, scanned over layers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax
import declax.layers as tl
from declax.layers.reversible import NotReversibleError
from declax.models.blocks import ScanLayers

KEY = jax.random.PRNGKey(0)


def _normal(shape, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _block(d=8, rate=0.2):
  return [tl.ReversibleHalfResidual(tl.LayerNorm(), tl.Dense(2 * d), tl.Relu(), tl.Dense(d),
                                    tl.Dropout(rate)),
          tl.ReversibleSwap(),
          tl.ReversibleHalfResidual(tl.LayerNorm(), tl.Dense(d), tl.Dropout(rate)),
          tl.ReversibleSwap()]


def _grads(model, params, x, key=jax.random.PRNGKey(3)):
  def loss(p, x):
    y = model.apply({"params": p}, x, rngs={"dropout": key})
    return jnp.sum(y[0] * jnp.sin(y[1])) + jnp.sum(y[0] ** 2)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)


def _assert_trees_close(a, b, rtol=1e-4):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(y))))


def test_param_free_layers_reverse_their_forward():
  x, y = _normal((2, 3, 4)), _normal((2, 3, 4), seed=2)
  for layer, items in [(tl.ReversibleSwap(), (x, y)), (tl.ReversibleSelect([2, 0, 1]), (x, y, x)),
                       (tl.ReversibleConcatenatePair(), (x, y)),
                       (tl.ReversibleReshape((2, 3), (6,), n_in=2), (x, y))]:
    outputs = layer.apply({}, items)
    back = layer.apply({}, *outputs, method=type(layer).reverse)
    for a, b in zip(back, items, strict=True):
      np.testing.assert_array_equal(a, b)
  assert tl.ReversibleReshape((2, 3), (6,)).apply({}, x).shape == (6, 4)
  assert str(tl.ReversibleSwap()) == "ReversibleSwap_in2_out2"
  assert str(tl.ReversibleSelect([2, 0, 1])) == "ReversibleSelect[2,0,1]_in3_out3"
  with pytest.raises(ValueError, match=r"input\(s\) \[1\] are missing"):
    tl.ReversibleSelect([0], n_in=2)


@pytest.mark.slow
def test_half_residual_adds_and_subtracts_the_branch():
  acc, ctx = _normal((2, 5, 8)), _normal((2, 5, 8), seed=2)
  half = tl.ReversibleHalfResidual(tl.LayerNorm(), tl.Dense(8))
  assert (half.n_in, half.n_out) == (2, 2)
  variables = half.init(KEY, (acc, ctx))
  out, ctx_out = half.apply(variables, (acc, ctx))
  branch = tl.Serial(tl.LayerNorm(), tl.Dense(8)).apply(
      {"params": variables["params"]["compute_residual"]}, ctx)
  np.testing.assert_allclose(out, acc + branch, rtol=1e-6)
  np.testing.assert_array_equal(ctx_out, ctx)
  back, _ = half.apply(variables, out, ctx_out, method=tl.ReversibleHalfResidual.reverse)
  np.testing.assert_allclose(back, acc, atol=1e-5)
  attn = tl.ReversibleHalfResidual(tl.LayerNorm(), attention_layer=tl.CausalAttention(8))
  assert attn.n_in == 2 and "CausalAttention" in str(attn)


@pytest.mark.slow
def test_reversible_serial_gradients_equal_backprop_with_dropout():
  model = tl.ReversibleSerial(_block())
  plain = tl.ReversibleSerial(model.layers, custom_backward=False)
  x = (_normal((2, 5, 8)), _normal((2, 5, 8), seed=2))
  params = model.init(KEY, x)["params"]
  (loss, grads), (loss_plain, grads_plain) = _grads(model, params, x), _grads(plain, params, x)
  np.testing.assert_allclose(loss, loss_plain, rtol=1e-6)
  _assert_trees_close(grads, grads_plain)
  # Dropout is on: another key gives another loss.
  assert abs(float(_grads(model, params, x, jax.random.PRNGKey(4))[0]) - float(loss)) > 1e-3


@pytest.mark.slow
def test_nested_reversible_serial_and_integer_items():
  inner = tl.ReversibleSerial(_block(), _block())
  model = tl.ReversibleSerial(inner, _block())
  plain = tl.ReversibleSerial(
      tl.ReversibleSerial(inner.layers, custom_backward=False), model.layers[1:],
      custom_backward=False)
  x = (_normal((2, 5, 8)), _normal((2, 5, 8), seed=2))
  params = model.init(KEY, x)["params"]
  _assert_trees_close(_grads(model, params, x), _grads(plain, params, x))
  # An integer item passes through (e.g. a mask) and gets no gradient.
  select = tl.ReversibleSerial(tl.ReversibleSelect([1, 0, 2]), tl.ReversibleSwap())
  out = select.apply({}, (x[0], x[1], jnp.arange(3)))
  np.testing.assert_array_equal(out[2], jnp.arange(3))
  grad = jax.grad(lambda a: jnp.sum(select.apply({}, (a, x[1], jnp.arange(3)))[0]))(x[0])
  np.testing.assert_array_equal(grad, jnp.ones_like(grad))


def test_reversible_serial_refuses_a_layer_that_is_not_reversible():
  with pytest.raises(NotReversibleError, match=r"sublayer 1 \(Dense_4\) is not reversible"):
    tl.ReversibleSerial(tl.ReversibleSwap(), tl.Dense(4))
  assert issubclass(NotReversibleError, declax.DeclaxError)
  assert issubclass(NotReversibleError, TypeError)


@pytest.mark.slow
def test_reversible_serial_under_scan_over_layers():
  model = ScanLayers(tl.ReversibleSerial(_block()), n_layers=3)
  plain = ScanLayers(tl.ReversibleSerial(_block(), custom_backward=False), n_layers=3)
  x = (_normal((2, 5, 8)), _normal((2, 5, 8), seed=2))
  params = model.init(KEY, x)["params"]
  assert jax.tree.leaves(params)[0].shape[0] == 3
  _assert_trees_close(_grads(model, params, x), _grads(plain, params, x))


@pytest.mark.slow
def test_reversible_memory_stays_flat_in_depth():
  x = (jnp.ones((4, 256, 32)), jnp.ones((4, 256, 32)))

  def temp_bytes(n_blocks, custom):
    model = tl.ReversibleSerial([_block(32, 0.0) for _ in range(n_blocks)],
                                custom_backward=custom)
    params = jax.eval_shape(model.init, KEY, x)["params"]
    grad = jax.grad(lambda p, x: jnp.sum(model.apply({"params": p}, x)[0]))
    return jax.jit(grad).lower(params, x).compile().memory_analysis().temp_size_in_bytes

  rev = temp_bytes(8, True) / temp_bytes(2, True)
  plain = temp_bytes(8, False) / temp_bytes(2, False)
  assert rev < 1.8 and plain > 2.5, (rev, plain)
