"""Trax's `trax/layers/activation_fns_test.py`, translated one for one."""

import numpy as np

import declax.layers as tl
from tests.trax_compat.trax_shim import as_list, init_apply

X = np.array([-2.0, -1.0, 0.0, 2.0, 3.0, 5.0])
H = np.array([-1.5, -0.5, -0.25, 0.0, 0.25, 0.5, 1.5])


def test_relu():
  assert as_list(init_apply(tl.Relu(), X)) == [0.0, 0.0, 0.0, 2.0, 3.0, 5.0]


def test_parametric_relu():
  assert as_list(init_apply(tl.ParametricRelu(a=0.25), X)) == [0.0, 0.0, 0.0, 0.5, 0.75, 1.25]


def test_leaky_relu():
  assert as_list(init_apply(tl.LeakyRelu(a=0.125), X)) == [-0.25, -0.125, 0.0, 2.0, 3.0, 5.0]


def test_hard_sigmoid():
  assert as_list(init_apply(tl.HardSigmoid(), H)) == [0.0, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]


def test_hard_tanh():
  assert as_list(init_apply(tl.HardTanh(), H)) == [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]
