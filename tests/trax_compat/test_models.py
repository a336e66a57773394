"""Trax's model tests, translated one for one: `trax/models/{mlp,neural_gpu,resnet,rnn,
transformer,atari_cnn}_test.py` (test names prefixed by the file they come from).

Where declax's own model takes other arguments than Trax's (`MLP`), the Trax-equivalent model
comes from `declax.trax_compat.model_from_trax`, as a Trax user moving over would write it.
"""

import functools
import operator

import numpy as np
import pytest

import declax.layers as tl
from declax import models
from declax.trax_compat import model_from_trax
from tests.trax_compat.trax_shim import KEY, init_apply


def test_mlp_forward_shape():
  model = model_from_trax("MLP", layer_widths=(32, 16, 8))
  assert init_apply(model, np.ones((7, 28, 28, 3)).astype(np.float32)).shape == (7, 8)


@pytest.mark.slow
def test_neural_gpu_ngpu():
  model = models.NeuralGPU(d_feature=30, steps=4, vocab_size=22)
  assert init_apply(model, np.ones((3, 5, 7)).astype(np.int32)).shape == (3, 5, 7, 22)


@pytest.mark.slow
def test_resnet_resnet():
  model = models.Resnet50(d_hidden=8, n_output_classes=10)
  y = init_apply(model, np.ones((3, 256, 256, 3)).astype(np.float32), mutable=["batch_stats"])
  assert y[0].shape == (3, 10)


@pytest.mark.slow
def test_resnet_wide_resnet():
  model = models.WideResnet(n_blocks=1, n_output_classes=10)
  y = init_apply(model, np.ones((3, 32, 32, 3)).astype(np.float32), mutable=["batch_stats"])
  assert y[0].shape == (3, 10)


@pytest.mark.slow
def test_rnn_rnnlm_forward_shape():
  model = models.RNNLM(vocab_size=20, d_model=16)
  assert init_apply(model, np.ones((3, 28)).astype(np.int32)).shape == (3, 28, 20)


@pytest.mark.slow
def test_rnn_grulm_forward_shape():
  model = models.GRULM(vocab_size=20, d_model=16)
  assert init_apply(model, np.ones((3, 28)).astype(np.int32)).shape == (3, 28, 20)


@pytest.mark.slow
def test_rnn_lstmseq2seqattn_forward_shape():
  model = models.LSTMSeq2SeqAttn(input_vocab_size=20, target_vocab_size=20, d_model=16)
  x = np.ones((3, 28)).astype(np.int32)
  ys = init_apply(model, [x, x])
  assert [y.shape for y in ys] == [(3, 28, 20), (3, 28)]


@pytest.mark.slow
def test_transformer_lm_forward_shape():
  vocab_size = 16
  model = models.TransformerLM(vocab_size, d_model=32, d_ff=64, n_layers=2, n_heads=2)
  assert init_apply(model, np.ones((3, 5)).astype(np.int32)).shape == (3, 5, vocab_size)


@pytest.mark.slow
@pytest.mark.parametrize("input_vocab_size,output_vocab_size",
                         [(16, None), (16, 16), (16, 50)],
                         ids=["same_vocab", "same_size", "different_size"])
def test_transformer_forward_shape(input_vocab_size, output_vocab_size):
  model = models.Transformer(input_vocab_size, output_vocab_size, d_model=32, d_ff=64,
                             n_encoder_layers=2, n_decoder_layers=2, n_heads=2)
  xs = [np.ones((3, 5)).astype(np.int32), np.ones((3, 5)).astype(np.int32)]
  y, _ = init_apply(model, xs)
  assert y.shape == (3, 5, output_vocab_size or input_vocab_size)


@pytest.mark.slow
def test_transformer_dot_product_causal_attention_fast_inference():
  # Trax's test_utils.test_eval_equals_predict_discrete
  model_fn = functools.partial(models.TransformerLM, d_model=4, d_ff=8, n_layers=2, n_heads=2,
                               max_len=16)
  vocab_size, length, batch_size = 10, 5, 3
  model_slow = model_fn(mode="eval", vocab_size=vocab_size)
  model_fast = model_fn(mode="predict", vocab_size=vocab_size)
  signature = np.zeros((batch_size, 1), np.int32)
  params = model_slow.init(KEY, signature)["params"]
  cache = {k: v for k, v in model_fast.init(KEY, signature).items() if k != "params"}
  buf = np.zeros((batch_size, length), dtype=np.int32)
  next_sym = np.zeros((batch_size, 1), dtype=np.int32)
  rng = np.random.default_rng(0)
  for index in range(length):
    logits_slow = model_slow.apply({"params": params}, buf)
    logits_fast, cache = model_fast.apply({"params": params, **cache}, next_sym,
                                          mutable=list(cache))
    np.testing.assert_array_almost_equal(logits_slow[:, index, :], logits_fast[:, 0, :],
                                         decimal=5)
    next_sym = rng.integers(vocab_size, size=(batch_size, 1)).astype(np.int32)
    buf[:, index] = next_sym[:, 0]


@pytest.mark.slow
def test_atari_cnn_computes():
  model = models.AtariCnn(hidden_sizes=(4, 4), output_size=6)
  B, T, OBS = 2, 2, (28, 28, 3)  # noqa: N806 (Trax's names)
  variables = model.init(KEY, np.zeros((1, 1) + OBS, np.float32))  # Trax inits from a signature
  x = np.arange(B * (T + 1) * functools.reduce(operator.mul, OBS)).reshape(B, T + 1, *OBS)
  assert model.apply(variables, x.astype(np.float32)).shape == (B, T + 1, 6)


def test_frame_stack_mlp_computes():
  model = models.FrameStackMLP(hidden_sizes=(4, 4), output_size=6)
  B, T, OBS = 2, 2, 3  # noqa: N806 (Trax's names)
  variables = model.init(KEY, np.zeros((1, 1, OBS), np.float32))  # Trax inits from a signature
  x = np.arange(B * (T + 1) * OBS).reshape(B, T + 1, OBS)
  assert model.apply(variables, x.astype(np.float32)).shape == (B, T + 1, 6)


def test_layers_are_declax_layers():
  assert isinstance(models.GRULM(vocab_size=4, d_model=2), tl.Layer)
