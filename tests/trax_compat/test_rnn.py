"""Trax's `trax/layers/rnn_test.py`, translated one for one."""

import numpy as np
import pytest

import declax.layers as tl
from tests.trax_compat.trax_shim import init_apply


@pytest.mark.slow
def test_conv_gru_cell():
  x = np.ones((8, 1, 7, 9))
  assert init_apply(tl.ConvGRUCell(9, kernel_size=(3, 3)), x).shape == x.shape


def test_gru_cell():
  ys = init_apply(tl.GRUCell(9), [np.ones((8, 7, 9)), np.ones((8, 7, 9))])
  assert [y.shape for y in ys] == [(8, 7, 9), (8, 7, 9)]


def test_lstm_cell():
  ys = init_apply(tl.LSTMCell(9), [np.ones((8, 9)), np.ones((8, 18))])
  assert [y.shape for y in ys] == [(8, 9), (8, 18)]


def test_sru():
  x = np.ones((8, 9, 7), np.float32)
  assert init_apply(tl.SRU(7), x).shape == x.shape


def test_names():
  assert str(tl.LSTM(3)) == "LSTM_3"
  assert str(tl.GRU(5)) == "GRU_5"
  assert str(tl.SRU(7)) == "SRU_7"
