"""Trax's `trax/layers/convolution_test.py`, translated one for one."""

import numpy as np

import declax.layers as tl
from tests.trax_compat.trax_shim import init, init_apply, weights


def test_call():
  assert init_apply(tl.Conv(30, (3, 3)), np.ones((9, 5, 5, 20))).shape == (9, 3, 3, 30)


def test_use_bias_true():
  layer, x = tl.Conv(30, (3, 3), use_bias=True), np.ones((9, 5, 5, 20))
  assert init_apply(layer, x).shape == (9, 3, 3, 30)
  params = weights(init(layer, x))
  assert isinstance(params, dict)
  assert len(params) == 2
  assert params["kernel"].shape == (3, 3, 20, 30)
  assert params["bias"].shape == (30,)


def test_use_bias_false():
  layer, x = tl.Conv(30, (3, 3), use_bias=False), np.ones((9, 5, 5, 20))
  assert init_apply(layer, x).shape == (9, 3, 3, 30)
  assert list(weights(init(layer, x))) == ["kernel"]
  assert weights(init(layer, x))["kernel"].shape == (3, 3, 20, 30)


def test_call_rebatch():
  assert init_apply(tl.Conv(30, (3, 3)), np.ones((2, 9, 5, 5, 20))).shape == (2, 9, 3, 3, 30)


def test_causal_conv():
  layer = tl.CausalConv(filters=30, kernel_width=3)
  assert init_apply(layer, np.ones((9, 5, 20))).shape == (9, 5, 30)


def test_causal_conv_use_bias_false():
  layer, x = tl.CausalConv(filters=30, kernel_width=3, use_bias=False), np.ones((9, 5, 20))
  assert init_apply(layer, x).shape == (9, 5, 30)
  assert weights(init(layer, x))["kernel"].shape == (3, 20, 30)
