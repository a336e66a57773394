"""Trax's `trax/layers/deconvolution_test.py`, translated one for one."""

import numpy as np

import declax.layers as tl
from tests.trax_compat.trax_shim import init_apply


def test_call():
  assert init_apply(tl.ConvTranspose(30, (3, 3)), np.ones((9, 5, 5, 20))).shape == (9, 7, 7, 30)
