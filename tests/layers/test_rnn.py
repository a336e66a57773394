"""Tests of declax.layers.rnn: cell numerics against flax.linen / numpy, sequence layers against
the cells, predict-mode state, gradients, parameters, printing and errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import declax.layers as tl
from tests.layers.jit_variants import LayerVariantsTest

B, T, D, N = 2, 6, 3, 4
KEY = jax.random.PRNGKey(0)


def _x(shape=(B, T, D), seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _params(variables):
  return {k: np.asarray(v, np.float64) for k, v in nn.unbox(variables["params"]).items()}


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _gru_reference(params, x_t, h):
  """Trax's GRU cell written with concatenated kernels, in numpy float64."""
  p = _params({"params": params})
  w1 = np.concatenate([p["input_kernel"][:, : 2 * N], p["recurrent_kernel"][:, : 2 * N]])
  w2 = np.concatenate([p["input_kernel"][:, 2 * N :], p["recurrent_kernel"][:, 2 * N :]])
  u, r = np.split(_sigmoid(np.concatenate([x_t, h], -1) @ w1 + p["bias"][: 2 * N]), 2, -1)
  c = np.tanh(np.concatenate([x_t, r * h], -1) @ w2 + p["bias"][2 * N :])
  return u * h + (1 - u) * c


# ------------------------------------------------------------------------------------------------
# Cells
# ------------------------------------------------------------------------------------------------


def test_lstm_cell_matches_flax_lstm_cell():
  cell = tl.LSTMCell(N)
  x_t, state = _x((B, D)), _x((B, 2 * N), seed=2)
  variables = cell.init(KEY, (x_t, state))
  h, new_state = cell.apply(variables, (x_t, state))
  assert h.shape == (B, N) and new_state.shape == (B, 2 * N)

  p = nn.unbox(variables["params"])
  split = lambda w: dict(zip("ijfo", jnp.split(w, 4, axis=-1), strict=True))  # Trax's gate order
  wi, wh, b = split(p["input_kernel"]), split(p["recurrent_kernel"]), split(p["bias"])
  flax_gate = {"i": "i", "j": "g", "f": "f", "o": "o"}
  flax_params = {}
  for ours, theirs in flax_gate.items():
    flax_params[f"i{theirs}"] = {"kernel": wi[ours]}
    flax_params[f"h{theirs}"] = {"kernel": wh[ours], "bias": b[ours]}
  c, h_prev = jnp.split(state, 2, axis=-1)
  (flax_c, flax_h), flax_y = nn.LSTMCell(N).apply({"params": flax_params}, (c, h_prev), x_t)
  np.testing.assert_allclose(h, flax_y, atol=1e-6)
  np.testing.assert_allclose(new_state, jnp.concatenate([flax_c, flax_h], -1), atol=1e-6)
  np.testing.assert_allclose(new_state[:, N:], h)  # the state packs (c, h)


def test_gru_cell_matches_numpy_reference():
  cell = tl.GRUCell(N)
  x_t, state = _x((B, D)), _x((B, N), seed=2)
  variables = cell.init(KEY, (x_t, state))
  h, new_state = jax.jit(cell.apply)(variables, (x_t, state))
  np.testing.assert_array_equal(h, new_state)
  np.testing.assert_allclose(h, _gru_reference(variables["params"], np.asarray(x_t, np.float64),
                                               np.asarray(state, np.float64)), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cell_cls,state_size", [(tl.LSTMCell, 2 * N), (tl.GRUCell, N)])
def test_cell_gradients(cell_cls, state_size):
  cell = cell_cls(2)
  x_t, state = _x((1, 3)), _x((1, cell_cls(2).state_size), seed=2)
  params = cell.init(KEY, (x_t, state))["params"]
  apply = jax.jit(lambda p, x, s: cell.apply({"params": p}, (x, s)))
  check_grads(apply, (params, x_t, state), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)
  assert cell_cls(N).state_size == state_size


def test_forget_bias_initialization():
  lstm = nn.unbox(tl.LSTMCell(N).init(KEY, (_x((B, D)), jnp.zeros((B, 2 * N)))))["params"]
  np.testing.assert_array_equal(lstm["bias"], [0] * 2 * N + [1] * N + [0] * N)
  gru = nn.unbox(tl.GRU(N, forget_bias=2.0).init(KEY, _x()))["params"]
  np.testing.assert_array_equal(gru["bias"], [2] * N + [0] * 2 * N)


# ------------------------------------------------------------------------------------------------
# Sequence layers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_cls,cell_cls", [(tl.LSTM, tl.LSTMCell), (tl.GRU, tl.GRUCell)])
def test_sequence_layer_equals_looping_the_cell(layer_cls, cell_cls):
  layer, cell = layer_cls(N), cell_cls(N)
  x = _x()
  variables = layer.init(KEY, x)
  y = jax.jit(layer.apply)(variables, x)
  assert y.shape == (B, T, N)
  state = jnp.zeros((B, cell.state_size))
  outputs = []
  for t in range(T):  # the cell and the sequence layer share their parameter tree
    y_t, state = cell.apply(variables, (x[:, t], state))
    outputs.append(y_t)
  np.testing.assert_allclose(y, jnp.stack(outputs, axis=1), atol=1e-6)


def test_cells_compose_with_the_scan_combinator():
  x = _x()
  scan = tl.Scan(tl.LSTMCell(N), axis=1)
  variables = scan.init(KEY, (x, jnp.zeros((B, 2 * N))))
  ys, final = scan.apply(variables, (x, jnp.zeros((B, 2 * N))))
  y = tl.LSTM(N).apply({"params": variables["params"]["layer"]}, x)
  np.testing.assert_allclose(ys, y, atol=1e-6)
  np.testing.assert_allclose(final[:, N:], y[:, -1], atol=1e-6)


def test_gru_sequence_matches_numpy_reference():
  layer = tl.GRU(N)
  x = _x()
  variables = layer.init(KEY, x)
  h = np.zeros((B, N))
  expected = []
  for t in range(T):
    h = _gru_reference(variables["params"], np.asarray(x[:, t], np.float64), h)
    expected.append(h)
  np.testing.assert_allclose(layer.apply(variables, x), np.stack(expected, 1), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("layer_cls", [tl.LSTM, tl.GRU])
@pytest.mark.parametrize("init_length", [1, T])
def test_predict_stepwise_equals_full_pass(layer_cls, init_length):
  x = _x()
  full = layer_cls(N)
  params = full.init(KEY, x)["params"]
  expected = full.apply({"params": params}, x)
  layer = tl.with_mode(full, "predict")
  variables = layer.init(KEY, x[:, :init_length])
  cache = variables["cache"]
  assert cache["state"].shape == (B, full.state_size) and not np.any(cache["state"])
  assert jax.tree.structure(variables["params"]) == jax.tree.structure(params)

  step = jax.jit(lambda v, x_t: layer.apply(v, x_t, mutable=["cache"]))
  outputs = []
  for t in range(T):
    y_t, state = step({"params": params, "cache": cache}, x[:, t : t + 1])
    cache = state["cache"]
    outputs.append(y_t)
  np.testing.assert_allclose(jnp.concatenate(outputs, 1), expected, atol=1e-5)
  # Chunks of several steps continue from the cached state too.
  cache = variables["cache"]
  y_a, state = layer.apply({"params": params, "cache": cache}, x[:, :2], mutable=["cache"])
  y_b, _ = layer.apply({"params": params, **state}, x[:, 2:], mutable=["cache"])
  np.testing.assert_allclose(jnp.concatenate([y_a, y_b], 1), expected, atol=1e-5)


def test_train_and_eval_modes_carry_no_state():
  layer = tl.LSTM(N)
  variables = layer.init(KEY, _x())
  assert set(variables) == {"params"}
  y = layer.apply(variables, _x())
  np.testing.assert_array_equal(tl.with_mode(layer, "eval").apply(variables, _x()), y)


def test_bfloat16_compute_with_float32_params():
  layer = tl.LSTM(N, dtype=jnp.bfloat16)
  x = _x()
  variables = layer.init(KEY, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.unbox(variables)))
  y = layer.apply(variables, x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(jnp.float32), tl.LSTM(N).apply(variables, x), atol=5e-2)


@pytest.mark.usefixtures("logical_axes")
def test_parameter_shapes_and_logical_axes():
  variables = tl.LSTM(N).init(KEY, _x())
  got = {name: (p.value.shape, p.names) for name, p in variables["params"].items()}
  assert got == {"input_kernel": ((D, 4 * N), ("embed", "mlp")),
                 "recurrent_kernel": ((N, 4 * N), ("embed", "mlp")),
                 "bias": ((4 * N,), ("mlp",))}
  gru = tl.GRUCell(N, kernel_axes=None).init(KEY, (_x((B, D)), jnp.zeros((B, N))))["params"]
  assert gru["input_kernel"].shape == (D, 3 * N) and isinstance(gru["input_kernel"], jax.Array)


# ------------------------------------------------------------------------------------------------
# Printing and errors
# ------------------------------------------------------------------------------------------------


def test_printing():
  assert str(tl.LSTM(16)) == "LSTM_16"
  assert str(tl.GRU(8)) == "GRU_8"
  assert str(tl.LSTMCell(16)) == "LSTMCell_in2_out2"
  assert str(tl.GRUCell(16)) == "GRUCell_in2_out2"
  assert str(tl.Serial(tl.LSTM(4), tl.GRU(4))) == "Serial[\n  LSTM_4\n  GRU_4\n]"


def test_errors_name_the_layer_and_shapes():
  layer = tl.LSTM(N)
  variables = layer.init(KEY, _x())
  with pytest.raises(tl.LayerError) as info:
    layer.apply(variables, _x((B, T, 5)))
  message = str(info.value)
  assert message.startswith("LSTM_4: ValueError: [Chex]") and "input has 5 features" in message
  assert "(3, 16)" in message and "f32[2,6,5]" in message

  with pytest.raises(tl.LayerError, match=r"Serial\[1\] > GRU_4: AssertionError.*\(2, 3\)"):
    tl.Serial(tl.Fn("Id", lambda x: x), tl.GRU(N)).init(KEY, jnp.ones((2, 3)))

  cell = tl.LSTMCell(N)
  with pytest.raises(tl.LayerError, match=r"LSTMCell: .*\(2, 4\) but expected \(2, 8\)"):
    cell.init(KEY, (_x((B, D)), jnp.zeros((B, N))))
  with pytest.raises(tl.LayerError, match="got 1 input"):
    cell.init(KEY, _x((B, D)))

  predict = tl.GRU(N, mode="predict")
  variables = predict.init(KEY, _x())
  with pytest.raises(tl.LayerError, match=r"another batch size"):
    predict.apply(variables, _x((3, 1, D)), mutable=["cache"])


class RecurrentVariantsTest(LayerVariantsTest):
  """Recurrent layers give the same results with and without jit."""

  __test__ = True
  _x = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 3))
  CASES = (
      (tl.LSTM(4), _x, None),
      (tl.GRU(4), _x, None),
      (tl.LSTMCell(4), (_x[:, 0], jnp.zeros((2, 8))), None),
  )
  BAD = ((tl.LSTM(4), _x, jnp.ones((2, 5))), (tl.GRU(4), _x, jnp.ones((2, 5, 6))))
