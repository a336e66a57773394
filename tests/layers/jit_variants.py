"""Layer tests that run with and without `jax.jit` (`chex.variants`).

A test file subclasses `LayerVariantsTest` and lists `CASES` (layer, inputs, reference function
of the inputs or None for "same as an eager run") and `BAD` (layer, inputs to init, inputs that
break its contract): the outputs must match the reference and a contract violation must raise
the same `LayerError` under `jit` as without it.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from declax.layers import LayerError
from declax.layers.stack import describe, unpack

KEY = jax.random.PRNGKey(0)


class LayerVariantsTest(chex.TestCase):
  __test__ = False  # only the subclasses in the test files run
  CASES: tuple = ()
  BAD: tuple = ()

  @chex.variants(with_jit=True, without_jit=True)
  def test_outputs_match_the_reference(self):
    for layer, inputs, reference in self.CASES:
      variables = layer.init(KEY, inputs)
      got = self.variant(layer.apply)(variables, inputs)
      expected = reference(*unpack(inputs)) if reference else layer.apply(variables, inputs)
      expected = jax.tree.map(jnp.asarray, expected)
      chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-5)
      chex.assert_trees_all_equal_dtypes(got, expected)

  @chex.variants(with_jit=True, without_jit=True)
  def test_contract_violations_raise_layer_errors(self):
    for layer, inputs, bad in self.BAD:
      variables = layer.init(KEY, inputs)
      with self.assertRaises(LayerError) as caught:
        self.variant(layer.apply)(variables, bad)
      outermost = caught.exception.frames[0]  # names the layer and what it received
      assert outermost.label.startswith(layer.label) and "created at" in str(caught.exception)
      assert outermost.received == describe(unpack(bad))
