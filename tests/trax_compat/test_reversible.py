"""Trax's `trax/layers/reversible_test.py`, translated to declax.

Test names and assertions are Trax's; only the Linen way of applying a layer changed
(`layer.apply({}, xs)` for `layer(xs)`). Trax parameterises over its backends; declax has one
(JAX), so the `_jax` case is the test itself.
"""

import numpy as np

import declax.layers as tl


def _to_list(ys):
  return [np.asarray(y).tolist() for y in ys]


def test_reversible_swap():
  layer = tl.ReversibleSwap()
  xs = [np.array([1, 2]), np.array([10, 20])]
  ys = layer.apply({}, xs)
  assert _to_list(ys) == [[10, 20], [1, 2]]
