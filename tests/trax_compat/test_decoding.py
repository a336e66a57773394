"""Trax's `trax/supervised/decoding_test.py`, translated one for one to declax.

Models come from `declax.trax_compat.model_from_trax` (Trax's arguments); Trax's
`model.init(signature)` / `model.init_from_file(path)` become Linen variables (`model.init` /
`declax.trax_compat.init_from_file`); `decoding.autoregressive_sample(model, inputs, ...)` takes
the variables and the prefix (Trax's `inputs` for a language model) or `inputs=` (the encoder's
input). The quality tests read Trax's own trained checkpoints from Trax's source tree next to
the repository (`../trax-src/trax/supervised/testdata`), and are skipped when it is absent.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax import decoding
from declax.trax_compat import init_from_file, model_from_trax

_TESTDATA = Path(__file__).parents[2] / ".." / "trax-src" / "trax" / "supervised" / "testdata"
needs_testdata = pytest.mark.skipif(not _TESTDATA.is_dir(),
                                    reason=f"Trax's decoding test data not found at {_TESTDATA}")
NO_TERRAFORMER = ("declax has no ConfigurableTerraformer (trax.models.research); see "
                  "docs/trax.md")


def _lsh_self_attention_fn():
  return functools.partial(tl.LSHSelfAttention, attention_dropout=0.0, chunk_len=64,
                           n_buckets=[32, 32], n_chunks_after=0, n_chunks_before=1, n_hashes=1,
                           n_parallel_heads=1, predict_drop_len=128, predict_mem_len=1024)


def _timebin_self_attention_fn(use_reference_code=False, chunk_len=64):
  return functools.partial(tl.SelfAttention, attention_dropout=0.05, chunk_len=chunk_len,
                           n_chunks_before=1, n_parallel_heads=1,
                           use_reference_code=use_reference_code, predict_drop_len=128,
                           predict_mem_len=1024)


def _init(model, *inputs):
  return model.init(jax.random.key(0), *inputs)


@pytest.mark.slow
def test_autoregressive_sample_transformerlm():
  model = model_from_trax("TransformerLM", vocab_size=10, d_model=32, d_ff=64, n_layers=1,
                          n_heads=2, mode="predict")
  variables = _init(model, jnp.zeros((1, 1), jnp.int32))
  s1 = decoding.autoregressive_sample(model, variables, eos_id=-1, max_length=10)
  assert s1.shape[0] == 1
  assert s1.shape[1] == 10
  # Trax's batch_size=2: a batch of two empty prefixes.
  s2 = decoding.autoregressive_sample(model, variables, prefix=np.zeros((2, 0), np.int32),
                                      eos_id=1, max_length=10)
  assert s2.shape[0] == 2
  assert s2.shape[1] < 11
  prefix = np.array([[1, 2, 3]])
  s3 = decoding.autoregressive_sample(model, variables, prefix, eos_id=-1, max_length=10)
  assert s3.shape[0] == 1
  assert s3.shape[1] == 10


@pytest.mark.skip(reason="Trax's TF-numpy backend (fastmath.Backend.TFNP) has no counterpart: "
                         "declax runs on JAX only")
def test_autoregressive_sample_transformerlm_tfnp():
  pass


@pytest.mark.slow
def test_autoregressive_sample_reformerlm():
  lsh_self_attention = _lsh_self_attention_fn()
  timebin_self_attention = _timebin_self_attention_fn()
  model = model_from_trax("ReformerLM", vocab_size=256, d_model=256, d_ff=512,
                          d_attention_key=128, d_attention_value=128, n_layers=2, n_heads=2,
                          dropout=0.05, max_len=65536,
                          attention_type=[timebin_self_attention, lsh_self_attention],
                          pos_axial_shape=(256, 256), pos_d_axial_embs=(128, 128),
                          ff_activation=tl.Relu, ff_use_sru=0, mode="predict")
  variables = _init(model, jnp.zeros((1, 1), jnp.int32))
  s1 = decoding.autoregressive_sample(model, variables, batch_size=1, eos_id=-1, max_length=10)
  assert s1.shape[0] == 1
  assert s1.shape[1] == 10


@pytest.mark.slow
def test_autoregressive_sample_transformer():
  model = model_from_trax("Transformer", input_vocab_size=10, d_model=32, d_ff=64,
                          n_encoder_layers=1, n_decoder_layers=1, n_heads=2, mode="predict")
  inputs = np.ones((1, 3), dtype=np.int32)
  variables = _init(model, (jnp.asarray(inputs), jnp.zeros((1, 1), jnp.int32)))
  s = decoding.autoregressive_sample(model, variables, inputs=inputs, eos_id=-1, max_length=10)
  assert s.shape[0] == 1
  assert s.shape[1] == 10


def _copy_lm(mode: str):
  model = model_from_trax("TransformerLM", d_model=64, d_ff=128, dropout=0.05, max_len=256,
                          n_heads=2, n_layers=2, vocab_size=13, mode=mode)
  shape11 = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  variables = init_from_file(model, _TESTDATA / "transformerlm_copy.pkl.gz", shape11)
  return model, variables


@needs_testdata
@pytest.mark.slow
def test_autoregressive_sample_transformerlm_quality():
  pred_model, variables = _copy_lm("predict")
  inputs = np.array([[0, 3, 7, 5, 3, 2, 4, 0]], dtype=np.int32)
  s = decoding.autoregressive_sample(pred_model, variables, inputs, max_length=6,
                                     temperature=0.0, eos_id=1)
  assert str(s[0]) == "[3 7 5 3 2 4]"


@needs_testdata
@pytest.mark.slow
def test_autoregressive_sample_transformerlm_quality_eval():
  # Trax's eval_mode=True re-runs the eval model on the whole prefix; declax's decoding switches
  # any model to 'predict' (same tokens, one cached step each).
  eval_model, variables = _copy_lm("eval")
  inputs = np.array([[0, 3, 7, 5, 3, 2, 4, 0]], dtype=np.int32)
  s = decoding.autoregressive_sample(eval_model, variables, inputs, max_length=6,
                                     temperature=0.0, eos_id=1)
  assert str(s[0]) == "[3 7 5 3 2 4]"


@needs_testdata
@pytest.mark.slow
def test_autoregressive_sample_transformerlm_quality_beam():
  pred_model, variables = _copy_lm("predict")
  inputs = np.array([[0, 3, 7, 5, 3, 2, 4, 0]], dtype=np.int32)
  # Trax's beam search has no EOS and no length penalty: eos_id=None, alpha=0.
  s, _ = decoding.beam_search(pred_model, variables, prefix=inputs, beam_size=3, max_length=6,
                              eos_id=None, alpha=0.0)
  assert s.shape[1] == 3  # 3 beams
  assert str(s[0, 0]) == "[3 7 5 3 2 4]"
  assert str(s[0, 1]) == "[3 7 5 3 2 2]"  # different from above
  assert str(s[0, 2]) == "[3 7 5 3 3 2]"  # different from above


@needs_testdata
@pytest.mark.slow
def test_autoregressive_sample_transformer_quality():
  pred_model = model_from_trax("Transformer", d_model=64, d_ff=128, dropout=0.05, max_len=256,
                               n_heads=2, n_encoder_layers=2, n_decoder_layers=2,
                               input_vocab_size=13, mode="predict")
  shape11 = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  variables = init_from_file(pred_model, _TESTDATA / "transformer_copy.pkl.gz",
                             (shape11, shape11))
  inputs = np.array([[3, 7, 5, 3, 2, 4, 1, 8]], dtype=np.int32)
  s = decoding.autoregressive_sample(pred_model, variables, inputs=inputs, eos_id=1,
                                     max_length=10, temperature=0.0)
  assert str(s[0]) == "[3 7 5 3 2 4 1 0 0 0]"  # Trax stops at EOS: '[3 7 5 3 2 4 1]'
  assert str(s[0][: list(s[0]).index(1) + 1]) == "[3 7 5 3 2 4 1]"


@pytest.mark.skip(reason=NO_TERRAFORMER)
def test_autoregressive_sample_terraformer_lsh():
  pass


@pytest.mark.skip(reason=NO_TERRAFORMER)
def test_autoregressive_sample_terraformer_lsh_attn_quality():
  pass


def _reformerlm_lsh(max_len: int):
  return model_from_trax(
      "ReformerLM", mode="predict", d_model=256, d_ff=512, dropout=0.05, max_len=2 * max_len,
      n_heads=4, n_layers=3, ff_use_sru=0, d_attention_key=64, d_attention_value=64,
      attention_type=functools.partial(tl.LSHSelfAttention, chunk_len=16, n_hashes=2,
                                       n_buckets=[32, 32], predict_drop_len=max_len,
                                       predict_mem_len=max_len, max_length_for_buckets=1024),
      vocab_size=13, pos_type="fixed-base", pos_d_axial_embs=None)


@pytest.mark.slow
def test_autoregressive_sample_reformerlm_lsh():
  max_len = 32
  pred_model = _reformerlm_lsh(max_len)
  variables = _init(pred_model, jnp.zeros((1, 1), jnp.int32))
  # 0w0
  inputs = np.array([[0, 3, 7, 5, 3, 2, 0]], dtype=np.int32)
  inputs = np.pad(inputs, [(0, 0), (0, max_len - inputs.shape[1])], mode="constant",
                  constant_values=0)
  s = decoding.autoregressive_sample(pred_model, variables, inputs, eos_id=-1, max_length=10,
                                     temperature=0.0)
  assert s.shape[0] == 1
  assert s.shape[1] == 10


@pytest.mark.skipif(not (_TESTDATA / "reformerlm_copy_lsh_attn.pkl.gz").exists(),
                    reason="Trax's reformerlm_copy_lsh_attn.pkl.gz is not in the Trax source "
                           "tree next to the repository (nor in the trax 1.4.1 wheel)")
@pytest.mark.slow
def test_autoregressive_sample_reformerlm_lsh_quality():
  max_len = 32
  pred_model = _reformerlm_lsh(max_len)
  shape11 = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  variables = init_from_file(pred_model, _TESTDATA / "reformerlm_copy_lsh_attn.pkl.gz",
                             shape11)
  # 0w0
  inputs = np.array([[0, 3, 7, 5, 3, 2, 0]], dtype=np.int32)
  inp_len = inputs.shape[1]
  s = decoding.autoregressive_sample(pred_model, variables, inputs, eos_id=-1,
                                     max_length=inp_len - 2, temperature=0.0)
  np.testing.assert_equal(np.asarray(s[0]), inputs[0, 1:inp_len - 1])


@pytest.mark.skip(reason=NO_TERRAFORMER)
def test_autoregressive_sample_terraformer_pure_lsh():
  pass


@pytest.mark.skip(reason=NO_TERRAFORMER)
def test_autoregressive_sample_terraformer_pure_lsh_attn_quality():
  pass
