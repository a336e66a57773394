"""SRU: Trax's recurrence, and 'predict' mode (state in the 'cache' collection) equals the full
pass fed token by token or prefix-then-tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl

X = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 4))


def _trax_sru(params, x):
  """Trax's SRU, step by step in NumPy: c_t = f c_{t-1} + (1 - f) y, h = r c + (1 - r) x sqrt 3."""
  dense = params["body"]["layers_0"]["layers_0"]
  ryf = np.asarray(x) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
  r, f, y = np.split(ryf, 3, axis=-1)
  r, f = 1 / (1 + np.exp(-r)), 1 / (1 + np.exp(-f))
  c, out = np.zeros_like(y[:, 0]), []
  for t in range(x.shape[1]):
    c = f[:, t] * c + (1 - f[:, t]) * y[:, t]
    out.append(c * r[:, t] + np.asarray(x)[:, t] * (1 - r[:, t]) * np.sqrt(3))
  return np.stack(out, axis=1)


def _decode(params, x, prefix=0):
  layer = tl.SRU(4, mode="predict")
  cache = layer.init(jax.random.PRNGKey(0), x[:, :1])["cache"]
  step = jax.jit(lambda c, xi: layer.apply({"params": params, "cache": c}, xi, mutable=["cache"]))
  cuts = [0] + ([prefix] if prefix else []) + list(range(prefix + 1, x.shape[1] + 1))
  outs = []
  for start, end in zip(cuts[:-1], cuts[1:], strict=True):
    out, state = step(cache, x[:, start:end])
    cache = state["cache"]
    outs.append(out)
  return jnp.concatenate(outs, axis=1)


def test_sru_is_trax_recurrence():
  layer = tl.SRU(4)
  params = layer.init(jax.random.PRNGKey(0), X)["params"]
  np.testing.assert_allclose(layer.apply({"params": params}, X), _trax_sru(params, X), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("prefix", [0, 3])
def test_sru_predict_equals_full_pass(prefix):
  layer = tl.SRU(4)
  params = layer.init(jax.random.PRNGKey(0), X)["params"]
  np.testing.assert_allclose(_decode(params, X, prefix), layer.apply({"params": params}, X),
                             atol=1e-5)


def test_sru_predict_cache_batch_mismatch_is_named():
  layer = tl.SRU(4, mode="predict")
  variables = layer.init(jax.random.PRNGKey(0), X[:, :1])
  with pytest.raises(tl.LayerError, match=r"cached state has shape \(2, 4\), but this call "
                     r"needs \(3, 4\)"):
    layer.apply(variables, jnp.ones((3, 1, 4)), mutable=["cache"])


def test_sru_bfloat16_keeps_a_float32_state():
  layer = tl.SRU(4, mode="predict")
  variables = layer.init(jax.random.PRNGKey(0), X[:, :1].astype(jnp.bfloat16))
  _, state = layer.apply(variables, X[:, :2].astype(jnp.bfloat16), mutable=["cache"])
  assert jax.tree.leaves(state["cache"])[0].dtype == jnp.float32
