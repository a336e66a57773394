"""Bad inputs into layers and combinators (catalogue entries L*): each raises the documented
error type with the documented message, which names the layer path and what it received.

Layers hold no state outside their variables, so "what stays intact" is the caller's variables:
tests check the failing call did not change them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.layers import LayerError
from tests.reliability.catalogue import CATALOGUE

KEY = jax.random.PRNGKey(0)


def expect(entry: str, error: BaseException) -> str:
  text = str(error)
  assert CATALOGUE[entry] in text, f"{entry}: {CATALOGUE[entry]!r} not in\n{text}"
  return text


def layer_error(entry: str, fn) -> LayerError:
  with pytest.raises(LayerError) as info:
    fn()
  text = expect(entry, info.value)
  assert "created at " in text and "received " in text  # where it was made, what it got
  assert "test_bad_layer_inputs.py:" in text
  return info.value


def construction_error(entry: str, fn, kind=ValueError) -> None:
  with pytest.raises(kind) as info:
    fn()
  assert not isinstance(info.value, LayerError)
  expect(entry, info.value)


def _same(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# ---- Dense, Conv, Embedding, attention ---------------------------------------------------------


def test_L1_dense_features_differ_from_the_kernel_names_the_path_also_under_jit():
  model = tl.Serial(tl.Relu(), tl.Dense(4))
  variables = model.init(KEY, jnp.ones((2, 3)))
  before = jax.tree.map(np.array, variables)
  error = layer_error("L1", lambda: model.apply(variables, jnp.ones((2, 5))))
  assert isinstance(error.cause, ValueError) and error.path == "Serial[1] > Dense_4"
  layer_error("L1", lambda: jax.jit(lambda x: model.apply(variables, x))(jnp.ones((2, 5))))
  assert _same(variables, before)


def test_L2_dense_scalar_input():
  layer_error("L2", lambda: tl.Dense(4).init(KEY, jnp.ones(())))


def test_L3_dense_string_input():
  layer_error("L3", lambda: tl.Dense(4).init(KEY, np.array([["a", "b", "c"]])))


def test_L29_none_as_a_stack_item():
  layer_error("L29", lambda: tl.Dense(4).init(KEY, None))


def test_L4_conv_wrong_rank():
  conv = tl.Conv(8, (3, 3))
  layer_error("L4", lambda: conv.init(KEY, jnp.ones((8, 8, 3))))


def test_L5_conv_channels_differ_from_the_kernel():
  conv = tl.Conv(8, (3, 3))
  variables = conv.init(KEY, jnp.ones((1, 8, 8, 3)))
  layer_error("L5", lambda: conv.apply(variables, jnp.ones((1, 8, 8, 4))))


def test_L6_conv_input_smaller_than_the_kernel():
  layer_error("L6", lambda: tl.Conv(8, (3, 3)).init(KEY, jnp.ones((1, 2, 2, 3))))


def test_L7_embedding_float_ids():
  emb = tl.Embedding(10, 4)
  variables = emb.init(KEY, jnp.array([1, 2]))
  error = layer_error("L7", lambda: emb.apply(variables, jnp.array([1.0, 2.0])))
  assert isinstance(error.cause, TypeError)


def test_L8_embedding_out_of_range_ids_raise_when_asked():
  emb = tl.Embedding(10, 4, out_of_range="raise")
  variables = emb.init(KEY, jnp.array([1, 2]))
  layer_error("L8", lambda: emb.apply(variables, jnp.array([1, 12])))


def test_L9_embedding_out_of_range_ids_clip_by_default_like_trax():
  emb = tl.Embedding(10, 4)
  assert f"out_of_range={emb.out_of_range!r}" == CATALOGUE["L9"]
  variables = emb.init(KEY, jnp.array([1, 2]))
  table = variables["params"]["embedding"]  # plain arrays outside a mesh
  rows = emb.apply(variables, jnp.array([-1, 12]))
  np.testing.assert_array_equal(rows, table[jnp.array([0, 9])])


def test_L10_embedding_unknown_out_of_range_option():
  construction_error("L10", lambda: tl.Embedding(10, 4, out_of_range="wrap"))


def test_L11_attention_wrong_rank():
  attention = tl.CausalAttention(8, n_heads=2)
  variables = attention.init(KEY, jnp.ones((2, 5, 8)))
  error = layer_error("L11", lambda: attention.apply(variables, jnp.ones((5, 8))))
  assert isinstance(error.cause, AssertionError)


def test_L12_attention_wrong_feature_size():
  attention = tl.CausalAttention(8, n_heads=2)
  variables = attention.init(KEY, jnp.ones((2, 5, 8)))
  layer_error("L12", lambda: attention.apply(variables, jnp.ones((2, 5, 6))))


def test_L13_attention_heads_do_not_divide_the_features():
  construction_error("L13", lambda: tl.CausalAttention(8, n_heads=3))


def test_L14_attention_mask_of_the_wrong_rank():
  attention = tl.Attention(8, n_heads=2)
  layer_error("L14", lambda: attention.init(KEY, (jnp.ones((2, 5, 8)), jnp.ones((2, 5), bool))))


# ---- Combinators: arity -----------------------------------------------------------------------


def test_L15_serial_given_too_few_items():
  layer_error("L15", lambda: tl.Serial(tl.Dense(2), tl.Add()).init(KEY, jnp.ones((2, 3))))


def test_L16_parallel_given_too_few_items():
  layer_error("L16", lambda: tl.Parallel(tl.Dense(2), tl.Dense(3)).init(KEY, jnp.ones((2, 3))))


def test_L17_parallel_of_one_layer():
  construction_error("L17", lambda: tl.Parallel(tl.Dense(2)))


def test_L18_branch_given_too_few_items():
  layer_error("L18", lambda: tl.Branch(tl.Add(), tl.Dense(2)).init(KEY, jnp.ones((2, 3))))


def test_L19_select_index_out_of_range():
  construction_error("L19", lambda: tl.Select([0, 3], n_in=2))


def test_L20_select_given_too_few_items():
  layer_error("L20", lambda: tl.Select([0, 2]).init(KEY, (jnp.ones(2), jnp.ones(2))))


def test_L21_cond_branches_of_different_arity():
  construction_error("L21", lambda: tl.Cond(tl.Fn("Positive", lambda x: jnp.sum(x) > 0),
                                            tl.Dup()))


def test_L22_cond_condition_not_boolean():
  cond = tl.Cond(tl.Fn("Positive", lambda x: jnp.sum(x)), tl.Relu())
  error = layer_error("L22", lambda: cond.init(KEY, (jnp.ones(2), jnp.ones(2))))
  assert isinstance(error.cause, TypeError)


def test_L23_fn_with_a_default_argument():
  construction_error("L23", lambda: tl.Fn("F", lambda x, y=1: x))


def test_L24_layer_returning_the_wrong_number_of_outputs():
  layer_error("L24", lambda: tl.Fn("F", lambda x: x, n_out=2).init(KEY, jnp.ones(2)))


def test_L25_unknown_mode():
  construction_error("L25", lambda: tl.Dropout(0.1, mode="training"))


# ---- Loss layers ------------------------------------------------------------------------------


def test_L26_loss_targets_of_another_shape():
  loss = tl.CrossEntropyLoss()
  layer_error("L26", lambda: loss.init(KEY, (jnp.ones((4, 3)), jnp.ones((5,), jnp.int32),
                                             jnp.ones(4))))


def test_L27_loss_boolean_targets():
  loss = tl.CrossEntropyLoss()  # float ids and distributions are accepted, as in Trax
  layer_error("L27", lambda: loss.init(KEY, (jnp.ones((4, 3)), jnp.ones((4,), bool),
                                             jnp.ones(4))))


def test_L28_loss_weights_that_do_not_broadcast():
  loss = tl.CrossEntropyLoss()
  layer_error("L28", lambda: loss.init(KEY, (jnp.ones((4, 3)), jnp.ones((4,), jnp.int32),
                                             jnp.ones(3))))
