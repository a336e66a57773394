"""Trax's `trax/layers/attention_test.py`, translated one for one."""

import functools

import numpy as np
import pytest

import declax.layers as tl
from tests.trax_compat.trax_shim import (
  KEY,
  as_list,
  check_eval_equals_predict,
  check_eval_is_deterministic,
  init_apply,
)

X = np.array([[[2, 5, 3, 4], [0, 1, 2, 3], [0, 1, 2, 3]]], np.float32)
SHIFT_X = np.array([[[9, 9, 9], [8, 8, 8], [7, 7, 7], [6, 6, 6]],
                    [[99, 98, 97], [96, 95, 94], [93, 92, 91], [90, 89, 88]]])


def test_attention_simple_call():
  # CausalAttention called on two items at the top level passes the second through (Trax).
  y, mask = init_apply(tl.CausalAttention(d_feature=4, n_heads=2), [X, np.array([[[[1, 0, 1]]]])])
  assert y.shape == (1, 3, 4)
  assert mask.shape == (1, 1, 1, 3)


def test_shift_right():
  y = init_apply(tl.ShiftRight(), SHIFT_X)
  assert SHIFT_X.shape == y.shape
  assert as_list(y) == [[[0, 0, 0], [9, 9, 9], [8, 8, 8], [7, 7, 7]],
                        [[0, 0, 0], [99, 98, 97], [96, 95, 94], [93, 92, 91]]]


def test_shift_right_float():
  x = SHIFT_X.astype(np.float32) / 2.0
  assert x.dtype == np.float32
  y = init_apply(tl.ShiftRight(), x)
  assert y.dtype == np.float32
  assert as_list(y) == [[[0.0, 0.0, 0.0], [4.5, 4.5, 4.5], [4.0, 4.0, 4.0], [3.5, 3.5, 3.5]],
                        [[0.0, 0.0, 0.0], [49.5, 49.0, 48.5], [48.0, 47.5, 47.0],
                         [46.5, 46.0, 45.5]]]


def test_padding_mask():
  x = np.array([[1.0, 2.0, 3.0, 4.0, 0.0], [1.0, 2.0, 3.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0, 0.0]])
  y = init_apply(tl.PaddingMask(), x)
  assert x.shape == (3, 5)
  assert y.shape == (3, 1, 1, 5)
  np.testing.assert_equal(y, [[[[True, True, True, True, False]]],
                              [[[True, True, True, False, False]]],
                              [[[True, True, False, False, False]]]])


def test_causal_attention_simple_call():
  assert init_apply(tl.CausalAttention(d_feature=4, n_heads=2), X).shape == (1, 3, 4)


def test_causal_attention_deterministic_eval():
  inp = np.ones((1, 3, 32)).astype(np.float32)
  check_eval_is_deterministic(inp, functools.partial(tl.CausalAttention, d_feature=32,
                                                     n_heads=4))


@pytest.mark.slow
def test_causal_attention_predict_equals_eval():
  inp = np.ones((1, 10, 32)).astype(np.float32)
  check_eval_equals_predict(inp, functools.partial(tl.CausalAttention, d_feature=32, n_heads=4,
                                                   max_inference_length=16))


def test_positional_encoding_simple_call():
  x = np.array([[[2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0]]])
  assert init_apply(tl.PositionalEncoding(max_len=8), x).shape == (1, 2, 4)


def test_positional_encoding_predict():
  x = np.array([[[2.0, 3.0], [1.0, 2.0], [0.0, 1.0], [3.0, 4.0]]])
  assert x.shape == (1, 4, 2)
  layer = tl.PositionalEncoding(max_len=8)
  variables = layer.init(KEY, x)
  y = layer.apply(variables, x)
  assert y.shape == (1, 4, 2)
  layer = tl.PositionalEncoding(max_len=8, mode="predict")
  state = layer.init(KEY, x[:, :1, :])
  params = {"params": variables["params"]} if "params" in variables else {}
  for start, end in ((0, 1), (1, 3), (3, 4)):
    out, cache = layer.apply({**state, **params}, x[:, start:end, :], mutable=["cache"])
    state = {**state, **cache}
    assert out.shape == (1, end - start, 2)
    assert np.array_equal(out, y[:, start:end, :])


def test_positional_encoding_predict_equals_eval():
  x = np.array([[[2.0, 3.0], [1.0, 2.0], [0.0, 1.0], [3.0, 4.0]]])
  layer_eval = tl.PositionalEncoding(max_len=8, d_feature=4, mode="eval")
  layer_predict = tl.PositionalEncoding(max_len=8, d_feature=4, mode="predict")
  variables = layer_eval.init(KEY, x)
  output_eval = layer_eval.apply(variables, x)
  state = layer_predict.init(KEY, x)
  output_predict, _ = layer_predict.apply({**state, "params": variables["params"]}, x,
                                          mutable=["cache"])
  assert np.array_equal(output_eval, output_predict)
