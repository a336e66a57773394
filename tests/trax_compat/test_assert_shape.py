"""Trax's `trax/layers/assert_shape_test.py`, translated one for one (mechanically: every
test keeps its layer, inputs and outcome; `layer(x)` becomes `apply`, with a dropout key)."""

import numpy as np
import pytest

import declax.layers as tl
from tests.trax_compat.trax_shim import RNGS


def run(layer, x):
  return layer.apply({}, x, rngs=RNGS)


def same(y, x):  # Trax's assertEqual(y, x) on lists of arrays
  ys = y if isinstance(y, (list, tuple)) else [y]
  xs = x if isinstance(x, (list, tuple)) else [x]
  assert len(ys) == len(xs)
  for a, b in zip(ys, xs, strict=True):
    np.testing.assert_array_equal(a, b)


def test_assert_function_simple_pass():
  layer = tl.AssertFunction('abc->abc', tl.Dropout(rate=0.1))
  x = np.ones((2, 5, 20))
  run(layer, x)


def test_assert_function_simple_fail():
  layer = tl.AssertFunction('abc->cba', tl.Dropout(rate=0.1))
  x = np.ones((2, 5, 20))
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_function_reduce_rank_ellipsis_pass():
  layer = tl.AssertFunction('...ab->...c', tl.Flatten(n_axes_to_keep=3))
  x = np.ones((1, 2, 3, 4, 5))
  run(layer, x)


def test_assert_function_reduce_rank_explicit_pass():
  layer = tl.AssertFunction('xyzab->xyzc', tl.Flatten(n_axes_to_keep=3))
  x = np.ones((1, 2, 3, 4, 5))
  run(layer, x)


def test_assert_function_reduce_rank_to_one_pass():
  layer = tl.AssertFunction('abcde->x', tl.Flatten(n_axes_to_keep=0))
  x = np.ones((1, 2, 3, 4, 5))
  run(layer, x)


def test_assert_function_reduce_rank_explicit_fail1():
  layer = tl.AssertFunction('abcde->abcde', tl.Flatten(n_axes_to_keep=3))
  x = np.ones((1, 2, 3, 4, 5))
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_function_reduce_rank_explicit_fail2():
  layer = tl.AssertFunction('abcde->abcd', tl.Flatten(n_axes_to_keep=3))
  x = np.ones((1, 2, 3, 4, 5))
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_function_two_outputs_pass():
  layer = tl.AssertFunction(
      '...cd->...x,...cd',
      tl.Branch(
          tl.Flatten(n_axes_to_keep=2),
          tl.Dropout(rate=0.1),
          ))
  x = np.ones((1, 2, 3, 4))
  run(layer, x)


def test_assert_function_numeric_dimensions_pass():
  layer = tl.AssertFunction(
      '...34->1234,...34',
      tl.Branch(
          tl.Dropout(rate=0.1),
          tl.Serial(),
          ))
  x = np.ones((1, 2, 3, 4))
  run(layer, x)


def test_assert_function_too_many_outputs_fail():
  layer = tl.AssertFunction(
      '...cd->...x,...cd,...cd,...cd',
      tl.Branch(
          tl.Flatten(n_axes_to_keep=2),
          tl.Dropout(rate=0.1),
          tl.Serial(),
          ))
  x = np.ones((1, 2, 3, 4))
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_function_multi_output_rank_fail():
  layer = tl.AssertFunction(
      '...34->...x,...y',
      tl.Branch(
          tl.Flatten(n_axes_to_keep=3),
          tl.Serial(),
          ))
  x = np.ones((1, 2, 3, 4))
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_simple_pass():
  layer = tl.AssertShape('aba,ba')
  x = [np.ones((10, 5, 10)), np.zeros((5, 10))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_same_shapes_pass():
  layer = tl.AssertShape('aba,ba')
  x = [np.ones((5, 5, 5)), np.zeros((5, 5))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_single_arg_pass():
  layer = tl.AssertShape('a')
  x = np.ones((5,))
  y = run(layer, x)
  assert y.tolist() == x.tolist()


def test_assert_shape_scalar_pass():
  layer = tl.AssertShape('')
  x = np.ones(())
  y = run(layer, x)
  assert y.tolist() == x.tolist()


def test_assert_shape_square_matrix_pass():
  layer = tl.AssertShape('aa')
  x = np.ones((3, 3))
  y = run(layer, x)
  assert y.tolist() == x.tolist()


def test_assert_shape_vector_scalar_pass():
  layer = tl.AssertShape('a,')
  x = [np.ones((5,)), np.zeros(())]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_three_args_pass():
  layer = tl.AssertShape('a,b,a')
  x = [np.ones((5,)), np.zeros(2), np.zeros(5)]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_multiple_matching_dims_pass():
  layer = tl.AssertShape('a,b,a,ab')
  x = [np.ones((5,)), np.zeros(2), np.zeros(5), np.zeros((5, 2))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_numeric_dims_pass():
  layer = tl.AssertShape('23,1,93')
  x = [np.ones((2, 3)), np.zeros(1), np.zeros((9, 3))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_numeric_dims_fail():
  layer = tl.AssertShape('24,1,93')
  x = [np.ones((2, 3)), np.zeros(1), np.zeros((9, 3))]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_ellipsis_middle_pass():
  layer = tl.AssertShape('a...bc,abc')
  x = [np.ones((1, 5, 5, 2, 3)), np.zeros((1, 2, 3))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_ellipsis_prefix_pass():
  layer = tl.AssertShape('...bc,abc')
  x = [np.ones((5, 5, 2, 3)), np.zeros((1, 2, 3))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_ellipsis_matching_zero_dims_pass():
  layer = tl.AssertShape('...bc,abc')
  x = [np.ones((2, 3)), np.zeros((1, 2, 3))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_ellipsis_matching_ellipsis_pass():
  layer = tl.AssertShape('...bc,...bc')
  x = [np.ones((1, 2, 3)), np.zeros((1, 2, 3))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_prefix_ellipsis_matching_sufix_ellipsis_pass():
  layer = tl.AssertShape('bb...,...bb')
  x = [np.ones((2, 2, 5, 6)), np.zeros((5, 6, 2, 2))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_middle_ellipsis_fail():
  layer = tl.AssertShape('ab...cde,2')
  x = [np.ones((2, 3, 4, 5)), np.zeros(2)]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_short_middle_ellipsis_fail():
  layer = tl.AssertShape('b...c,2')
  x = [np.ones(2), np.zeros(2)]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_double_ellipsis_fail():
  layer = tl.AssertShape('b......c,2')
  x = [np.ones((2, 3, 4, 5)), np.zeros(2)]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_typo_ellipsis_fail():
  layer = tl.AssertShape('b..c,2')
  x = [np.ones((2, 3, 4, 5)), np.zeros(2)]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_ellipsis_matching_ellipsis_fail():
  layer = tl.AssertShape('...a,...b')
  x = [np.ones((1, 2, 3, 7)), np.zeros((1, 2, 8))]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_ellipsis_numeric_pass():
  layer = tl.AssertShape('...22,...3')
  x = [np.ones((1, 2, 3, 2, 2)), np.zeros((1, 2, 3, 3))]
  y = run(layer, x)
  same(y, x)


def test_assert_shape_prefix_and_sufix_ellipsis_fail():
  layer = tl.AssertShape('...c...,2')
  x = [np.ones((2, 3, 4, 5)), np.zeros(2)]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_ellipsis_too_few_dims_fail():
  layer = tl.AssertShape('...abc,2')
  x = [np.ones((4, 5)), np.zeros(2)]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_ellipses_matching_dims_fail():
  layer = tl.AssertShape('...2,...8')
  x = [np.ones((1, 2, 3, 9)), np.zeros((1, 3, 3, 8))]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_dims_matching_fail():
  layer = tl.AssertShape('aba,ab')
  x = [np.ones((10, 5, 10)), np.ones((5, 8))]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_rank_fail():
  layer = tl.AssertShape('aba,ab')
  x = [np.ones((10, 5, 10)), np.ones((5, 10, 4))]
  with pytest.raises(tl.LayerError):
    run(layer, x)


def test_assert_shape_square_matrix_fail():
  layer = tl.AssertShape('aa')
  x = np.ones((10, 5))
  with pytest.raises(tl.LayerError):
    run(layer, x)
