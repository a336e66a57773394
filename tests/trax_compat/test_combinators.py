"""Trax's `trax/layers/combinators_test.py`, translated one for one (same names and assertions).

`layer(x)` after `layer.init(...)` becomes `init_apply(layer, x)`; `layer.weights` becomes the
Linen `params` tree, where a shared layer appears once (Trax marks its other uses with
`GET_WEIGHTS_FROM_CACHE`).
"""

import jax
import numpy as np
import pytest

import declax.layers as tl
from tests.trax_compat.trax_shim import as_list, init, init_apply, not_applicable, weights


def DivideBy(val):  # noqa: N802
  return tl.Fn("DivideBy", lambda x: x / val)


def ReturnConst(val):  # noqa: N802
  return tl.Fn("ReturnConst", lambda: val)


def SmallerThan(val):  # noqa: N802
  return tl.Fn("SmallerThan", lambda x: x < val)


# -- SerialTest ----------------------------------------------------------------------------------


def test_serial_none_is_no_op():
  ys = init_apply(tl.Serial(None), (np.array([1, 2, 3, 4]), np.array([10, 20, 30])))
  assert as_list(ys) == [[1, 2, 3, 4], [10, 20, 30]]


def test_serial_empty_list_is_no_op():
  ys = init_apply(tl.Serial([]), (np.array([1, 2, 3, 4]), np.array([10, 20, 30])))
  assert as_list(ys) == [[1, 2, 3, 4], [10, 20, 30]]


def test_serial_one_in_one_out():
  assert as_list(init_apply(tl.Serial(DivideBy(3)), np.array([3, 6, 9, 12]))) == [1, 2, 3, 4]


def test_serial_zero_in_one_out():
  assert as_list(init_apply(tl.Serial(ReturnConst(np.array([3, 4, 5, 6]))), ())) == [3, 4, 5, 6]


def test_serial_one_in_two_out():
  layer = tl.Serial(DivideBy(3), ReturnConst(np.array([3, 4, 5, 6])))
  assert as_list(init_apply(layer, np.array([3, 6, 9, 12]))) == [[3, 4, 5, 6], [1, 2, 3, 4]]


def test_serial_const_div():
  layer = tl.Serial(ReturnConst(np.array([3, 6, 9, 12])), DivideBy(3))
  assert as_list(init_apply(layer, ())) == [1, 2, 3, 4]


def test_serial_div_div():
  layer = tl.Serial(DivideBy(2.0), DivideBy(5.0))
  assert as_list(init_apply(layer, np.array([10, 20, 30]))) == [1, 2, 3]


def test_serial_dup_dup():
  ys = init_apply(tl.Serial(tl.Dup(), tl.Dup()), np.array([1, 2, 3]))
  assert as_list(ys) == [[1, 2, 3], [1, 2, 3], [1, 2, 3]]


def test_serial_default_name():
  assert "Serial" in str(tl.Serial(tl.Dup(), tl.Dup()))


def test_serial_custom_name():
  assert "Branch" in str(tl.Serial(tl.Dup(), tl.Dup(), name="Branch"))


def test_serial_weights():
  model = tl.Serial(tl.Dense(4), tl.Dense(5), tl.Dense(7))
  params = weights(init(model, np.zeros((2, 3))))
  assert isinstance(params, dict)
  assert len(params) == 3


def test_serial_flat_weights_and_state():
  model = tl.Serial(tl.Dup(), tl.Dense(5), tl.Serial(tl.Dense(7), tl.Dup()))
  variables = init(model, np.zeros((2, 3)))
  flat_weights = jax.tree.leaves(weights(variables))  # Trax's flatten_weights_and_state
  flat_state = jax.tree.leaves({k: v for k, v in variables.items() if k != "params"})
  assert len(flat_weights) == 4
  assert not flat_state
  not_applicable("unflatten_weights_and_state into another model and weight setters: Linen "
                 "variables are plain pytrees passed to apply (use jax.tree_util)")


def test_serial_flat_weights_and_state_shared():
  shared = tl.Dense(5)
  model = tl.Serial(tl.Dense(5), shared, tl.Serial(shared, tl.Dup()))
  variables = init(model, np.zeros((2, 3)))
  assert len(jax.tree.leaves(weights(variables))) == 4
  assert not jax.tree.leaves({k: v for k, v in variables.items() if k != "params"})
  not_applicable("unflatten_weights_and_state into another model and weight setters: Linen "
                 "variables are plain pytrees passed to apply (use jax.tree_util)")


def test_serial_assign_sublayer_weights():
  not_applicable("weight setters (layer.weights = ...): Linen layers hold no weights")


def test_serial_shared_weights():
  layer = tl.Dense(5)
  params = weights(init(tl.Serial(layer, layer), np.array([1, 2, 3, 4, 5])))
  assert list(params) == ["layers_0"]  # the second use reads the first one's weights


def test_serial_shared_weights_nested():
  layer = tl.Dense(5)
  params = weights(init(tl.Serial(layer, tl.Serial(layer)), np.array([1, 2, 3, 4, 5])))
  assert list(params) == ["layers_0"]


def test_serial_shared_weights_double_nested():
  layer = tl.Dense(5)
  model = tl.Serial(tl.Serial(layer), tl.Serial(layer))
  params = weights(init(model, np.array([1, 2, 3, 4, 5])))
  assert list(params) == ["layers_0"] and list(params["layers_0"]) == ["layers_0"]


def test_serial_shared_weights_for_shared_serial():
  layer = tl.Serial(tl.Dense(5), tl.Dense(5))
  model = tl.Serial(layer, layer)
  sample_input = np.array([1, 2, 3, 4, 5])
  variables = init(model, sample_input)
  assert list(weights(variables)) == ["layers_0"]
  y = model.apply(variables, sample_input)
  assert y.shape == (5,)


def test_serial_state():
  model = tl.Serial(tl.Dense(4), tl.Dense(5), tl.Dense(7))
  variables = init(model, np.zeros((2, 3)))
  assert set(variables) == {"params"}  # Trax: a tuple of 3 empty states
  not_applicable("a per-layer state tuple: Linen keeps state in named collections (none here)")


def test_serial_set_rng_recurse_two_levels():
  dense_00, dense_01, dense_10, dense_11 = (tl.Dense(2) for _ in range(4))
  layer = tl.Serial(tl.Serial(dense_00, dense_01), tl.Serial(dense_10, dense_11))
  w = weights(init(layer, np.zeros((1, 2))))
  for a, b in ((w["layers_0"]["layers_0"], w["layers_0"]["layers_1"]),
               (w["layers_1"]["layers_0"], w["layers_1"]["layers_1"])):
    assert not np.array_equal(a["kernel"], b["kernel"])
    assert not np.array_equal(a["bias"], b["bias"])


# -- ParallelTest --------------------------------------------------------------------------------


def test_parallel_dup_dup():
  ys = init_apply(tl.Parallel(tl.Dup(), tl.Dup()), (np.array([1, 2, 3]), np.array([10, 20])))
  assert as_list(ys) == [[1, 2, 3], [1, 2, 3], [10, 20], [10, 20]]


def test_parallel_div_div():
  layer = tl.Parallel(DivideBy(0.5), DivideBy(3.0))
  ys = init_apply(layer, (np.array([1, 2, 3]), np.array([30, 60])))
  assert as_list(ys) == [[2, 4, 6], [10, 20]]


def test_parallel_two_no_ops():
  ys = init_apply(tl.Parallel([], None), (np.array([1, 2, 3]), np.array([10, 20])))
  assert as_list(ys) == [[1, 2, 3], [10, 20]]


def test_parallel_default_name():
  assert "Parallel" in str(tl.Parallel(tl.Dup(), tl.Dup()))


def test_parallel_custom_name():
  assert "DupDup" in str(tl.Parallel(tl.Dup(), tl.Dup(), name="DupDup"))


def test_parallel_weights():
  model = tl.Parallel(tl.Dense(3), tl.Dense(5))
  params = weights(init(model, (np.zeros((2, 3)), np.zeros((2, 3)))))
  assert isinstance(params, dict)
  assert len(params) == 2


def test_parallel_shared_weights():
  layer = tl.Dense(5)
  sample_input = (np.array([1, 2, 3, 4, 5]), np.array([1, 2, 3, 4, 5]))
  assert list(weights(init(tl.Parallel(layer, layer), sample_input))) == ["layers_0"]


def test_parallel_shared_weights_nested():
  layer = tl.Dense(5)
  model = tl.Parallel([layer, tl.Dense(2)], [layer, tl.Dense(2)])
  sample_input = (np.array([1, 2, 3, 4, 5]), np.array([1, 2, 3, 4, 5]))
  params = weights(init(model, sample_input))
  assert "layers_0" in params["layers_0"] and "layers_0" not in params["layers_1"]


def test_parallel_shared_weights_for_shared_parallel():
  layer = tl.Parallel(tl.Dense(5), tl.Dense(7))
  model = tl.Parallel(layer, layer)
  sample_input = [np.array([1, 2, 3]), np.array([10, 20, 30]), np.array([100, 200, 300]),
                  np.array([1000, 2000, 3000])]
  variables = init(model, sample_input)
  assert list(weights(variables)) == ["layers_0"]
  y0, y1, y2, y3 = model.apply(variables, sample_input)
  assert (y0.shape, y1.shape, y2.shape, y3.shape) == ((5,), (7,), (5,), (7,))


def test_parallel_state():
  variables = init(tl.Parallel(tl.Dense(3), tl.Dense(5)), (np.zeros((2, 3)), np.zeros((2, 3))))
  assert set(variables) == {"params"}
  not_applicable("a per-layer state tuple: Linen keeps state in named collections (none here)")


# -- ConcatenateTest -----------------------------------------------------------------------------

A = np.array([[1, 2, 3], [4, 5, 6]])
B = np.array([[10, 20, 30], [40, 50, 60]])


def test_concatenate_n_in_n_out():
  layer = tl.Concatenate()
  assert (layer.n_in, layer.n_out) == (2, 1)


def test_concatenate_with_defaults():
  assert as_list(init_apply(tl.Concatenate(), (A, B))) == [[1, 2, 3, 10, 20, 30],
                                                           [4, 5, 6, 40, 50, 60]]


def test_concatenate_axis_0():
  assert as_list(init_apply(tl.Concatenate(axis=0), (A, B))) == [
      [1, 2, 3], [4, 5, 6], [10, 20, 30], [40, 50, 60]]


def test_concatenate_axis_1():
  assert as_list(init_apply(tl.Concatenate(axis=1), (A, B))) == [[1, 2, 3, 10, 20, 30],
                                                                 [4, 5, 6, 40, 50, 60]]


def test_concatenate_n_items_is_not_default():
  y = init_apply(tl.Concatenate(n_items=3), (A, B, 10 * B))
  assert y.shape == (2, 9)
  assert as_list(y) == [[1, 2, 3, 10, 20, 30, 100, 200, 300], [4, 5, 6, 40, 50, 60, 400, 500, 600]]


def test_concatenate_repr():
  assert repr(tl.Concatenate()) == "Concatenate_in2"
  assert repr(tl.Concatenate(axis=0)) == "Concatenate_axis0_in2"
  assert repr(tl.Concatenate(axis=1)) == "Concatenate_axis1_in2"
  assert repr(tl.Concatenate(n_items=3)) == "Concatenate_in3"


# -- BranchTest ----------------------------------------------------------------------------------


def test_branch_noop_dup():
  ys = init_apply(tl.Branch([], tl.Dup()), np.array([1, 2, 3]))
  assert as_list(ys) == [[1, 2, 3], [1, 2, 3], [1, 2, 3]]


def test_branch_add_div():
  ys = init_apply(tl.Branch(tl.Add(), DivideBy(0.5)), (np.array([1, 2, 3]),
                                                       np.array([10, 20, 30])))
  assert as_list(ys) == [[11, 22, 33], [2, 4, 6]]


def test_branch_one_sublayer():
  assert as_list(init_apply(tl.Branch(DivideBy(0.5)), np.array([1, 2, 3]))) == [2, 4, 6]


def test_branch_default_name():
  assert "Branch" in str(tl.Branch(tl.Add(), DivideBy(0.5)))


def test_branch_printing_sublayers():
  assert str(tl.Branch(tl.Add(), tl.Add())) == "Branch_in2_out2[\n  Add_in2\n  Add_in2\n]"


# -- SelectTest, DropTest, SwapTest --------------------------------------------------------------

XS3 = (np.array([1, 2, 3]), np.array([10, 20]), np.array([100]))


def test_select_computes_n_in():
  assert tl.Select([0, 0]).n_in == 1
  assert tl.Select([1, 0]).n_in == 2
  assert tl.Select([2]).n_in == 3


def test_select_given_n_in():
  assert tl.Select([0], n_in=2).n_in == 2
  assert tl.Select([0], n_in=3).n_in == 3


def test_select_first_of_3():
  assert as_list(init_apply(tl.Select([0], n_in=3), XS3)) == [1, 2, 3]


def test_select_second_of_3():
  assert as_list(init_apply(tl.Select([1], n_in=3), XS3)) == [10, 20]


def test_drop():
  assert as_list(init_apply(tl.Drop(), np.array([1, 2, 3]))) == []


def test_swap():
  ys = init_apply(tl.Swap(), (np.array([1, 2, 3]), np.array([10, 20, 30])))
  assert as_list(ys) == [[10, 20, 30], [1, 2, 3]]


# -- ChunkTest -----------------------------------------------------------------------------------


def test_chunk():
  layer = tl.Dense(4)
  x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
  variables = init(layer, x)
  y = layer.apply(variables, x)
  z = tl.Chunk(layer, 1).apply({"params": {"layer": variables["params"]}}, x)
  assert np.sum((y - z) ** 2) < 1e-5


def test_chunk_uneven_numbers():
  layer = tl.Dense(4)
  x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
  variables = init(layer, x)
  y = layer.apply(variables, x)
  chunk_variables = {"params": {"layer": variables["params"]}}
  z = tl.Chunk(layer, 3).apply(chunk_variables, x)  # by default it just passes
  assert np.sum((y - z) ** 2) < 1e-5
  chunk_with_test = tl.Chunk(layer, 3, pass_unchunkable=False)
  with pytest.raises(tl.LayerError):
    chunk_with_test.apply(chunk_variables, x)


# -- SerialWithSideOutputsTest -------------------------------------------------------------------


def test_serial_with_side_outputs_div_div():
  def some_layer():
    return tl.Parallel(DivideBy(2.0), DivideBy(5.0))
  layer = tl.SerialWithSideOutputs([some_layer(), some_layer()])
  xs = (np.array([1, 2, 3]), np.array([10, 20, 30, 40, 50]), np.array([100, 200]))
  assert [y.shape for y in init_apply(layer, xs)] == [(3,), (5,), (2,)]


# -- ScanTest ------------------------------------------------------------------------------------


def _add_with_carry():
  def f(x, carry):
    res = x + carry
    return res, res
  return tl.Fn("AddWithCarry", f, n_out=2)


def test_scan_default_axis():
  xs = [np.array([[0, 1, 2, 3], [0, 10, 20, 30], [0, 100, 200, 300]]),
        np.array([9000, 8000, 7000, 6000])]
  ys = init_apply(tl.Scan(_add_with_carry()), xs)
  assert as_list(ys) == [[[9000, 8001, 7002, 6003], [9000, 8011, 7022, 6033],
                          [9000, 8111, 7222, 6333]], [9000, 8111, 7222, 6333]]


def test_scan_axis_1():
  xs = [np.array([[0, 1, 2, 3], [0, 10, 20, 30], [0, 100, 200, 300]]),
        np.array([9000, 8000, 7000])]
  ys = init_apply(tl.Scan(_add_with_carry(), axis=1), xs)
  assert as_list(ys) == [[[9000, 9001, 9003, 9006], [8000, 8010, 8030, 8060],
                          [7000, 7100, 7300, 7600]], [9006, 8060, 7600]]


def test_scan_predict():
  layer = tl.Scan(_add_with_carry(), axis=1, mode="predict")
  xs = [np.array([[0, 1, 2]]), np.array([90])]
  variables = init(layer, xs)
  ys, state = layer.apply(variables, xs, mutable=["cache"])
  assert as_list(ys) == [[[90, 91, 93]], [93]]
  xs = [np.array([[3, 4]]), np.array([90])]
  ys, state = layer.apply({**variables, **state}, xs, mutable=["cache"])
  assert as_list(ys) == [[[96, 100]], [100]]


def test_scan_multi_input():
  def f(a, b, carry):
    return a + b, b, carry + 1
  # Trax declares n_out=2 and returns 3 items; declax checks n_out (DESIGN.md), so it says 3.
  layer = tl.Scan(tl.Fn("MultiInputFn", f, n_out=3), axis=1)
  xs = [np.array([[0, 1, 2], [0, 10, 20]]), np.array([[4, 5, 6], [40, 50, 60]]),
        np.array([9000, 8000])]
  ys = init_apply(layer, xs)
  assert as_list(ys) == [[[4, 6, 8], [40, 60, 80]], [[4, 5, 6], [40, 50, 60]], [9003, 8003]]


def test_scan_no_carry():
  layer = tl.Scan(tl.Fn("AddOne", lambda x: x + 1), n_carry=0)
  y = init_apply(layer, np.array([[1, 3, 7], [10, 30, 70]]))
  assert as_list(y) == [[2, 4, 8], [11, 31, 71]]


# -- CondTest ------------------------------------------------------------------------------------


def test_cond_basic_true():
  layer = tl.Cond(ReturnConst(True), ReturnConst([2]), ReturnConst([5]))
  assert as_list(init_apply(layer, ())) == 2


def test_cond_basic_false():
  layer = tl.Cond(ReturnConst(False), ReturnConst([2]), ReturnConst([5]))
  assert as_list(init_apply(layer, ())) == 5


def test_cond_complex_blocks():
  layer = tl.Cond(ReturnConst(True), DivideBy(2.0), DivideBy(4.0))
  ys = init_apply(layer, [np.arange(5).astype(np.float32)])
  assert as_list(ys) == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_cond_condition_func_true():
  layer = tl.Cond(SmallerThan(3.0), DivideBy(2.0), DivideBy(4.0))
  assert as_list(init_apply(layer, (np.array(2.0), np.array([4.0, 12.0])))) == [2.0, 6.0]


def test_cond_condition_func_false():
  layer = tl.Cond(SmallerThan(3.0), DivideBy(2.0), DivideBy(4.0))
  assert as_list(init_apply(layer, (np.array(4.0), np.array([4.0, 12.0])))) == [1.0, 3.0]


def test_cond_condition_func_default_false():
  layer = tl.Cond(SmallerThan(3.0), DivideBy(2.0))
  assert as_list(init_apply(layer, (np.array(4.0), np.array([4.0, 12.0])))) == [4.0, 12.0]


def test_cond_exception_n_out():
  with pytest.raises(ValueError):
    tl.Cond(SmallerThan(3.0), DivideBy(2.0), tl.Dup())


def test_cond_exception_n_in():
  with pytest.raises(ValueError):
    tl.Cond(SmallerThan(3.0), ReturnConst(2.0), DivideBy(2.0))


def test_cond_exception_run1():
  cond, true, false = SmallerThan(3.0), ReturnConst(2.0), ReturnConst(5.0)
  init_apply(tl.Cond(cond, true, false), np.array(4.0))
  for xs in ((), (np.array(4.0), np.array([4.0, 12.0]))):
    with pytest.raises(Exception):  # noqa: B017 (Trax's assertion)
      init_apply(tl.Cond(cond, true, false), xs)


def test_cond_exception_run2():
  layer = tl.Cond(SmallerThan(3.0), DivideBy(2.0), DivideBy(5.0))
  init_apply(layer, (np.array(4.0), np.array([4.0, 12.0])))
  for xs in ((), (np.array(4.0))):
    with pytest.raises(Exception):  # noqa: B017 (Trax's assertion)
      init_apply(layer, xs)


def test_cond_weights_and_state():
  cond, true, false = SmallerThan(3.0), tl.Dense(5), tl.Dense(5)
  layer = tl.Cond(cond, true, false)
  params = weights(init(layer, (np.array(2.0), np.array([0.0, 1.0, 2.0]))))
  assert set(params) == {"true", "false"}  # the condition has no weights
  assert not np.array_equal(params["true"]["kernel"], params["false"]["kernel"])
  not_applicable("weight and state setters (false.weights = true.weights): Linen layers hold "
                 "no weights; edit the params tree passed to apply instead")


# -- BatchLeadingAxesTest, BidirectionalTest -----------------------------------------------------


def test_batch_leading_axes_2axes():
  def f(x):
    assert len(x.shape) == 3
    return x
  layer = tl.BatchLeadingAxes(tl.Fn("Id3Dim", f), n_last_axes_to_keep=2)
  for shape in ((3, 4, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)):
    assert init_apply(layer, np.zeros(shape)).shape == shape


def test_bidirectional_dimensionality():
  x = np.ones((2, 3, 8))
  yhat = init_apply(tl.Bidirectional(tl.GRU(n_units=8)), x)
  assert yhat.shape == (2, 3, 8 + 8)
