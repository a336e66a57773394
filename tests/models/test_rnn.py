"""RNNLM: printing, causality, GRU/LSTM choice, predict-mode state in the 'cache' collection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.models import RNNLM


def test_rnnlm_prints_like_trax():
  assert str(RNNLM(16, d_model=8, n_layers=2)) == (
      "Serial[\n  ShiftRight(1)\n  Embedding_16_8\n  Dropout\n  LSTM_8\n  Dropout\n  LSTM_8\n"
      "  Dropout\n  Dense_16\n]")
  assert "GRU_8" in str(RNNLM(16, d_model=8, n_layers=1, rnn_cell="GRU"))
  with pytest.raises(ValueError, match="rnn_cell"):
    RNNLM(16, rnn_cell="Transformer")


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_rnnlm_is_causal_and_keeps_state_in_cache(cell):
  model = RNNLM(16, d_model=8, n_layers=2, rnn_cell=cell, dropout=0.0)
  x = jnp.asarray(np.random.RandomState(0).randint(1, 16, (2, 7)), jnp.int32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  assert set(variables) == {"params"}
  logits = tl.with_mode(model, "eval").apply(variables, x)
  assert logits.shape == (2, 7, 16)
  changed = tl.with_mode(model, "eval").apply(variables, x.at[:, 3].set(0))
  np.testing.assert_allclose(changed[:, :4], logits[:, :4], atol=1e-6)
  assert not np.allclose(changed[:, 4:], logits[:, 4:])
  predict = tl.with_mode(model, "predict")
  cache = jax.jit(predict.init)(jax.random.PRNGKey(0), x[:, :1])["cache"]
  width = 16 if cell == "LSTM" else 8
  assert jax.tree.map(jnp.shape, cache) == {"layers_3": {"state": (2, width)},
                                            "layers_5": {"state": (2, width)}}


def test_rnnlm_bfloat16():
  model = RNNLM(16, d_model=8, n_layers=1, dtype="bfloat16")
  x = jnp.ones((2, 5), jnp.int32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype("float32")}
  out = tl.with_mode(model, "eval").apply(variables, x)
  assert out.dtype == jnp.float32  # the policy: logits cast back to float32
