"""Scan, Cond, Chunk, BatchLeadingAxes and Bidirectional on concrete values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.layers.base import Layer
from tests.layers.jit_variants import LayerVariantsTest


class Mix(Layer):
  """(batch, d) -> (batch, n) with a learned kernel, for parameter-sharing checks."""

  n: int = 3

  @nn.compact
  def forward(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.n))
    return jnp.tanh(x @ kernel)


def rnn_cell():
  """(x_t, h) -> (h', h'): h' = Mix(x_t) + h."""
  return tl.Serial(tl.Parallel(Mix(3), None), tl.Add(), tl.Dup())


def test_scan_cumulative_sum():
  step = tl.Fn("Step", lambda x, c: (x + c, x + c), n_out=2)
  ys, carry = tl.Scan(step).apply({}, (jnp.arange(1.0, 5.0), jnp.zeros(())))
  np.testing.assert_allclose(ys, [1.0, 3.0, 6.0, 10.0])
  np.testing.assert_allclose(carry, 10.0)


def test_scan_shares_parameters_across_steps_and_matches_python_loop():
  scan = tl.Scan(rnn_cell(), axis=1)
  xs, h0 = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 4)), jnp.zeros((2, 3))
  variables = scan.init(jax.random.PRNGKey(0), (xs, h0))
  assert jax.tree.map(jnp.shape, variables["params"]) == {
      "layer": {"layers_0": {"layers_0": {"kernel": (4, 3)}}}}
  ys, h = scan.apply(variables, (xs, h0))
  kernel = variables["params"]["layer"]["layers_0"]["layers_0"]["kernel"]
  expected, state = [], h0
  for t in range(5):
    state = jnp.tanh(xs[:, t] @ kernel) + state
    expected.append(state)
  np.testing.assert_allclose(ys, jnp.stack(expected, axis=1), rtol=1e-5)
  np.testing.assert_allclose(h, state, rtol=1e-5)


def test_scan_remat_gives_same_values_and_gradients():
  xs, h0 = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 4)), jnp.zeros((2, 3))
  plain, remat = tl.Scan(rnn_cell(), axis=1), tl.Scan(rnn_cell(), axis=1, remat=True)
  variables = remat.init(jax.random.PRNGKey(0), (xs, h0))
  loss = lambda layer: lambda v: jnp.sum(layer.apply(v, (xs, h0))[0] ** 2)
  g_plain, g_remat = jax.grad(loss(plain))(variables), jax.grad(loss(remat))(variables)
  for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_scan_predict_mode_keeps_carry_between_calls():
  xs, h0 = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 4)), jnp.zeros((2, 3))
  variables = tl.Scan(rnn_cell(), axis=1).init(jax.random.PRNGKey(0), (xs, h0))
  full, _ = tl.Scan(rnn_cell(), axis=1).apply(variables, (xs, h0))
  predict = tl.Scan(rnn_cell(), axis=1, mode="predict")
  cache = predict.init(jax.random.PRNGKey(0), (xs[:, :1], h0))["cache"]
  pieces = []
  for start, stop in [(0, 2), (2, 3), (3, 6)]:
    (ys, _), new = predict.apply({"params": variables["params"], "cache": cache},
                                 (xs[:, start:stop], h0), mutable=["cache"])
    cache = new["cache"]
    pieces.append(ys)
  np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, rtol=1e-5)


def test_scan_construction_errors():
  with pytest.raises(ValueError, match="at least one scanned input"):
    tl.Scan(tl.Fn("F", lambda c: (c, c), n_out=2))


def test_cond_runs_either_branch_with_both_parameter_sets():
  cond = tl.Cond(tl.Fn("Positive", lambda x: jnp.sum(x) > 0), Mix(3), Mix(3))
  assert (cond.n_in, cond.n_out) == (2, 1)
  x = jnp.ones((2, 4))
  variables = cond.init(jax.random.PRNGKey(0), (jnp.ones(3), x))
  assert set(variables["params"]) == {"true", "false"}
  on_true = jnp.tanh(x @ variables["params"]["true"]["kernel"])
  on_false = jnp.tanh(x @ variables["params"]["false"]["kernel"])
  apply = jax.jit(cond.apply)
  np.testing.assert_allclose(apply(variables, (jnp.ones(3), x)), on_true, rtol=1e-6)
  np.testing.assert_allclose(apply(variables, (-jnp.ones(3), x)), on_false, rtol=1e-6)


def test_cond_identity_false_and_arity_checks():
  cond = tl.Cond(tl.Fn("Big", lambda x: x > 5), tl.Fn("Double", lambda x: 2 * x))
  x = jnp.arange(3.0)
  np.testing.assert_allclose(cond.apply({}, (jnp.asarray(9), x)), 2 * x)
  np.testing.assert_allclose(cond.apply({}, (jnp.asarray(1), x)), x)
  with pytest.raises(ValueError, match="branches differ in arity"):
    tl.Cond(tl.Fn("Big", lambda x: x > 5), tl.Dup())
  with pytest.raises(ValueError, match="branches differ in arity"):
    tl.Cond(tl.Fn("Big", lambda x: x > 5), tl.Dup(), tl.Add())
  with pytest.raises(tl.LayerError, match="must return a boolean scalar"):
    cond.apply({}, (jnp.ones(2), x))


def test_chunk_equals_unchunked_and_passes_unchunkable():
  layer = Mix(5)
  x = jax.random.normal(jax.random.PRNGKey(2), (6, 4))
  variables = layer.init(jax.random.PRNGKey(0), x)
  chunked = tl.Chunk(Mix(5), chunk_size=2)
  chunk_vars = {"params": {"layer": variables["params"]}}
  np.testing.assert_allclose(chunked.apply(chunk_vars, x), layer.apply(variables, x), rtol=1e-5)
  assert chunked.apply(chunk_vars, x[:5]).shape == (5, 5)
  strict = tl.Chunk(Mix(5), chunk_size=4, pass_unchunkable=False)
  with pytest.raises(tl.LayerError, match="chunk_size 4 does not divide the batch size 6"):
    strict.apply(chunk_vars, x)


def test_batch_leading_axes():
  layer = tl.BatchLeadingAxes(Mix(3))
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 7, 4))
  variables = layer.init(jax.random.PRNGKey(0), x)
  out = layer.apply(variables, x)
  assert out.shape == (2, 5, 7, 3)
  np.testing.assert_allclose(out, jnp.tanh(x @ variables["params"]["layer"]["kernel"]),
                             rtol=1e-5)


def test_bidirectional_has_separate_backward_parameters():
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 3))
  simple = tl.Bidirectional(Mix(4))
  variables = simple.init(jax.random.PRNGKey(0), x)
  assert set(variables["params"]) == {"forward_layer", "backward_layer"}
  out = simple.apply(variables, x)
  assert out.shape == (2, 5, 8)
  fwd = jnp.tanh(x @ variables["params"]["forward_layer"]["kernel"])
  bwd = jnp.tanh(x @ variables["params"]["backward_layer"]["kernel"])
  np.testing.assert_allclose(out, jnp.concatenate([fwd, bwd], -1), rtol=1e-5)
  assert str(simple) == "Bidirectional[\n  Mix\n  Concatenate_in2\n]"


def test_bidirectional_reverses_time_for_the_backward_pass():
  cumsum = tl.Serial(tl.Fn("Zeros", lambda x: (x, jnp.zeros(x.shape[:1])), n_out=2),
                     tl.Scan(tl.Fn("Step", lambda x, c: (x + c, x + c), n_out=2), axis=1),
                     tl.Select([0], n_in=2))
  x = jnp.arange(1.0, 5.0)[None]
  out = tl.Bidirectional(cumsum, merge_layer=tl.Fn("Stack", lambda a, b: jnp.stack([a, b]))
                         ).apply({}, x)
  np.testing.assert_allclose(out[0, 0], [1, 3, 6, 10])
  np.testing.assert_allclose(out[1, 0], [10, 9, 7, 4])


class ControlFlowVariantsTest(LayerVariantsTest):
  """Loops and branches give the same results with and without jit."""

  __test__ = True
  CASES = (
      (tl.Scan(tl.Fn("Step", lambda x, c: (x + c, x + c), n_out=2), axis=0),
       (jnp.arange(1.0, 5.0), jnp.zeros(())), lambda xs, c: (jnp.cumsum(xs), jnp.sum(xs))),
      (tl.BatchLeadingAxes(tl.Fn("Double", lambda x: 2 * x)), jnp.ones((2, 3, 4)),
       lambda x: 2 * x),
      (tl.Chunk(tl.Fn("Double", lambda x: 2 * x), chunk_size=2), jnp.ones((4, 3)),
       lambda x: 2 * x),
  )
  BAD = ((tl.BatchLeadingAxes(tl.Dense(3)), jnp.ones((2, 3, 4)), jnp.ones((2, 3, 5))),)
