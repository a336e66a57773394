"""Trax's `trax/layers/research/rotary_positional_embedding_test.py`, translated to declax.

Test name and assertions are Trax's; `layer.apply({}, q)` replaces `layer(q)`.
"""

import numpy as np

import declax.layers as tl


def test_rotary_monotonicity():
  layer = tl.Rotate()
  batch_size = 1
  seq_len = 32
  d_model = 512
  shape = (batch_size, seq_len, d_model)
  q, k = np.ones(shape).astype(np.float32), np.ones(shape).astype(np.float32)
  q, k = layer.apply({}, q), layer.apply({}, k)

  assert q.dtype == np.float32
  assert q.shape == shape

  # Test monotonicity of the resulting dot_product for the two first tokens
  # in close proximity
  dot_product = np.einsum("bnd, bmd -> bnm", q, k)

  assert (dot_product[0, 0, :9] > dot_product[0, 0, 1:10]).all()
  assert (dot_product[0, 1, 1:10] > dot_product[0, 1, 2:11]).all()
