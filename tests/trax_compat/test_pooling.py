"""Trax's `trax/layers/pooling_test.py`, translated one for one."""

import numpy as np

import declax.layers as tl
from tests.trax_compat.trax_shim import as_list, init_apply

X4 = np.array([[[[1, 2, 3], [4, 5, 6], [10, 20, 30], [40, 50, 60]],
                [[4, 2, 3], [7, 1, 2], [40, 20, 30], [70, 10, 20]]]])
X5 = np.array([[[0, 9], [1, 8], [2, 7], [3, 6], [4, 5]]])
X4P = np.array([[[0, 9], [1, 8], [2, 7], [3, 6]]])


def test_max_pool_forward_shape():
  y = init_apply(tl.MaxPool(pool_size=(2, 2), strides=(1, 2)), np.ones((11, 6, 4, 17)))
  assert y.shape == (11, 5, 2, 17)


def test_max_pool_forward():
  y = init_apply(tl.MaxPool(pool_size=(2, 2), strides=(2, 2)), X4)
  assert as_list(y) == [[[[7, 5, 6], [70, 50, 60]]]]


def test_max_pool_padding_default():
  assert as_list(init_apply(tl.MaxPool(pool_size=(3,), strides=(3,)), X5)) == [[[2, 9]]]


def test_max_pool_padding_same():
  layer = tl.MaxPool(pool_size=(3,), strides=(3,), padding="SAME")
  assert as_list(init_apply(layer, X5)) == [[[2, 9], [4, 6]]]
  assert as_list(init_apply(layer, X4P)) == [[[1, 9], [3, 7]]]


def test_sum_pool_forward_shape():
  y = init_apply(tl.SumPool(pool_size=(2, 2), strides=(1, 2)), np.ones((11, 6, 4, 17)))
  assert y.shape == (11, 5, 2, 17)


def test_sum_pool_forward():
  y = init_apply(tl.SumPool(pool_size=(2, 2), strides=(2, 2)), X4)
  assert as_list(y) == [[[[16, 10, 14], [160, 100, 140]]]]


def test_sum_pool_padding_same():
  layer = tl.SumPool(pool_size=(3,), strides=(3,), padding="SAME")
  assert as_list(init_apply(layer, X5)) == [[[3, 24], [7, 11]]]
  assert as_list(init_apply(layer, X4P)) == [[[1, 17], [5, 13]]]


def test_avg_pool_forward_shape():
  y = init_apply(tl.AvgPool(pool_size=(2, 2), strides=(1, 2)), np.ones((11, 6, 4, 17)))
  assert y.shape == (11, 5, 2, 17)


def test_avg_pool_forward():
  y = init_apply(tl.AvgPool(pool_size=(2, 2), strides=(2, 2)), X4)
  assert as_list(y) == [[[[4.0, 2.5, 3.5], [40, 25, 35]]]]


def test_avg_pool_padding_same():
  layer = tl.AvgPool(pool_size=(3,), strides=(3,), padding="SAME")
  assert as_list(init_apply(layer, X5)) == [[[1, 8], [3.5, 5.5]]]
  assert as_list(init_apply(layer, X4P)) == [[[0.5, 8.5], [2.5, 6.5]]]
