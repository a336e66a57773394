"""Trax's `trax/models/reformer/reformer_test.py`, translated to declax.

Test names and assertions are Trax's. Linen changes only: `init(rng, x)` / `apply` replace
`init(signature)` / `model(xs)` and `pure_fn`; attention partials are the same
`functools.partial`s of declax's classes. As in Trax, `pos_axial_shape` without `pos_type`
leaves the default `PositionalEncoding` in place.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.models import reformer


def _lsh_self_attention_fn():
  return functools.partial(
      tl.LSHSelfAttention,
      attention_dropout=0.0,
      chunk_len=64,
      n_buckets=[32, 32],
      n_chunks_after=0,
      n_chunks_before=1,
      n_hashes=1,
      n_parallel_heads=1,
      predict_drop_len=128,
      predict_mem_len=1024,
  )


def _timebin_self_attention_fn(use_reference_code=False):
  return functools.partial(
      tl.SelfAttention,
      attention_dropout=0.05,
      chunk_len=64,
      n_chunks_before=1,
      n_parallel_heads=1,
      use_reference_code=use_reference_code,
  )


@pytest.mark.slow
def test_reformer_lm_forward_shape():
  vocab_size = 16
  model = reformer.ReformerLM(
      vocab_size, d_model=32, d_ff=64, d_attention_key=16,
      d_attention_value=16, n_layers=1, n_heads=2, max_len=16)
  xs = [np.ones((1, 8)).astype(np.int32),
        np.ones((1, 8)).astype(np.int32)]
  variables = model.init(jax.random.PRNGKey(0), xs)
  ys = model.apply(variables, xs, rngs={"dropout": jax.random.PRNGKey(1)})
  assert [y.shape for y in ys] == [(1, 8, 16), (1, 8)]


@pytest.mark.slow
def test_reformer_lm_lsh():
  lsh_self_attention = _lsh_self_attention_fn()
  timebin_self_attention = _timebin_self_attention_fn()

  model = reformer.ReformerLM(
      vocab_size=256,
      d_model=256,
      d_ff=512,
      d_attention_key=64,
      d_attention_value=64,
      n_layers=2,
      n_heads=2,
      dropout=0.05,
      max_len=65536,
      attention_type=[timebin_self_attention, lsh_self_attention],
      pos_axial_shape=(256, 256),
      pos_d_axial_embs=(64, 192),
      ff_activation=tl.Relu,
      ff_use_sru=0,
      ff_chunk_size=8192,
      mode="train",
  )
  x = np.ones((1, 65536)).astype(np.int32)
  variables = model.init(jax.random.PRNGKey(0), x)

  @jax.jit
  def mock_training_step(x, params, rng):
    def compute_mock_loss(params):
      logits = model.apply({"params": params}, x, rngs={"dropout": rng})
      loss = jnp.mean(logits[..., 0])
      return loss, logits
    gradients, logits = jax.grad(compute_mock_loss, has_aux=True)(params)
    new_params = jax.tree.map(lambda w, g: w - 1e-4 * g, params, gradients)
    return new_params, logits

  _, logits = mock_training_step(x, variables["params"], jax.random.PRNGKey(0))
  assert logits.shape == (1, 65536, 256)
