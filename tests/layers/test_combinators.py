"""Stack semantics of the combinators on concrete values (Trax's own examples where it has them)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.layers.base import Layer
from tests.layers.jit_variants import LayerVariantsTest


class Scale(Layer):
  """A one-parameter layer for tests: x * w, w initialised to `init`."""

  init_value: float = 2.0

  @nn.compact
  def forward(self, x):
    w = self.param("w", lambda rng: jnp.asarray(self.init_value))
    return x * w


def run(layer, stack, variables=None):
  variables = layer.init(jax.random.PRNGKey(0), stack) if variables is None else variables
  return layer.apply(variables, stack)


X = jnp.array([1.0, 2.0, 3.0])
Y = jnp.array([10.0, 20.0, 30.0])
Z = jnp.array([100.0, 200.0, 300.0])


def close(a, b):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6)


def test_serial_arity_arithmetic():
  assert (tl.Serial(tl.Dup(), tl.Dup()).n_in, tl.Serial(tl.Dup(), tl.Dup()).n_out) == (1, 3)
  assert (tl.Serial(tl.Add(), tl.Add()).n_in, tl.Serial(tl.Add(), tl.Add()).n_out) == (3, 1)
  assert (tl.Serial(tl.Drop(), tl.Dup()).n_in, tl.Serial(tl.Drop(), tl.Dup()).n_out) == (2, 2)
  assert (tl.Serial().n_in, tl.Serial().n_out) == (1, 1)
  assert (tl.Serial(None).n_in, tl.Serial(None).n_out) == (1, 1)


def test_serial_flattens_nested_lists_and_runs_in_order():
  layer = tl.Serial([tl.Fn("Inc", lambda x: x + 1), [tl.Fn("Double", lambda x: 2 * x)]])
  assert len(layer.layers) == 2
  close(run(layer, X), 2 * (X + 1))


def test_serial_dup_dup_and_add():
  close(run(tl.Serial(tl.Dup(), tl.Dup()), X), (X, X, X))
  close(run(tl.Serial(tl.Add(), tl.Add()), (X, Y, Z)), X + Y + Z)


def test_serial_identity_and_top_level_passthrough():
  close(run(tl.Serial(), X), X)
  # A 1-in Serial at the top level leaves the extra items under its outputs.
  close(run(tl.Serial(tl.Fn("Neg", lambda x: -x)), (X, Y, Z)), (-X, Y, Z))


def test_only_serial_passes_extra_items_through():
  with pytest.raises(tl.LayerError, match=r"Add_in2 got 3 input\(s\), expects 2"):
    run(tl.Add(), (X, Y, Z))
  with pytest.raises(tl.LayerError, match=r"got 3 input"):
    run(tl.Parallel(tl.Dup(), tl.Dup()), (X, Y, Z))


def test_parallel_spans_and_identity_branches():
  layer = tl.Parallel(tl.Fn("Neg", lambda x: -x), None, tl.Add())
  assert (layer.n_in, layer.n_out) == (4, 3)
  close(run(layer, (X, Y, Z, X)), (-X, Y, Z + X))
  listed = tl.Parallel([tl.Dup(), tl.Add()], [])
  assert (listed.n_in, listed.n_out) == (2, 2)
  close(run(listed, (X, Y)), (2 * X, Y))


def test_parallel_construction_errors():
  with pytest.raises(ValueError, match="at least two sublayers"):
    tl.Parallel(tl.Dup())
  with pytest.raises(ValueError, match="n_in == 0"):
    tl.Parallel(tl.Dup(), tl.Fn("Const", lambda: jnp.zeros(3)))


def test_branch_trax_example():
  layer = tl.Branch(tl.Add(), tl.Fn("Div", lambda x0, x1: x0 / 0.5))
  assert (layer.n_in, layer.n_out) == (2, 2)
  close(run(layer, (X, Y)), (X + Y, 2 * X))
  assert str(tl.Branch(tl.Add(), tl.Add())) == "Branch_in2_out2[\n  Add_in2\n  Add_in2\n]"


def test_branch_with_identity_copies_top():
  close(run(tl.Branch(None, tl.Fn("Neg", lambda x: -x)), X), (X, -X))


def test_select_copies_reorders_and_drops():
  layer = tl.Select([0, 1, 1])
  assert (layer.n_in, layer.n_out) == (2, 3)
  assert str(layer) == "Select[0,1,1]_in2_out3"
  close(run(layer, (X, Y)), (X, Y, Y))
  close(run(tl.Select([2, 0], n_in=3), (X, Y, Z)), (Z, X))
  close(run(tl.Select([1], n_in=3), (X, Y, Z)), Y)
  with pytest.raises(ValueError, match="out of range"):
    tl.Select([3], n_in=2)


def test_residual_adds_shortcut_and_keeps_side_outputs():
  close(run(tl.Residual(tl.Fn("Double", lambda x: 2 * x)), X), 3 * X)
  residual = tl.Residual(tl.Fn("Neg", lambda x: -x), shortcut=tl.Fn("Triple", lambda x: 3 * x))
  close(run(residual, X), 2 * X)
  two_out = tl.Residual(tl.Dup())            # x + x, and the second copy stays on the stack
  assert (two_out.n_in, two_out.n_out) == (1, 2)
  close(run(two_out, X), (2 * X, X))
  two_in = tl.Residual(tl.Add())             # (x, y) -> (x + (x + y))
  assert (two_in.n_in, two_in.n_out) == (2, 1)
  close(run(two_in, (X, Y)), X + X + Y)


def test_stack_ops():
  close(run(tl.Dup(), X), (X, X))
  close(run(tl.Swap(), (X, Y)), (Y, X))
  assert run(tl.Drop(), X) == ()
  close(run(tl.Serial(tl.Drop()), (X, Y)), Y)
  close(run(tl.Add(), (X, Y)), X + Y)
  close(run(tl.SubtractTop(), (X, Y)), Y - X)
  close(run(tl.Multiply(), (X, Y)), X * Y)
  gate = jnp.array([1.0, 0.0, 0.5])
  close(run(tl.Gate(), (X, gate, Y)), gate * X + (1 - gate) * Y)


def test_concatenate_and_split():
  a, b = jnp.ones((2, 3)), jnp.zeros((2, 4))
  assert run(tl.Concatenate(), (a, b)).shape == (2, 7)
  assert run(tl.Concatenate(n_items=3, axis=0), (a, a, a)).shape == (6, 3)
  assert str(tl.Concatenate(axis=0)) == "Concatenate_axis0_in2"
  assert str(tl.Concatenate()) == "Concatenate_in2"
  parts = run(tl.Split(n_items=2), jnp.arange(8.0).reshape(2, 4))
  close(parts, (jnp.array([[0.0, 1], [4, 5]]), jnp.array([[2.0, 3], [6, 7]])))
  with pytest.raises(tl.LayerError, match="cannot split axis -1 of size 3"):
    run(tl.Split(), jnp.ones((2, 3)))


def test_fn_arity_and_construction_errors():
  assert (tl.Fn("F", lambda a, b, c: a).n_in, tl.Fn("F", lambda a, b, c: a).n_out) == (3, 1)
  assert tl.Fn("Z", lambda: jnp.zeros(2)).n_in == 0
  close(run(tl.Fn("SumDiff", lambda a, b: (a + b, a - b), n_out=2), (X, Y)), (X + Y, X - Y))
  with pytest.raises(ValueError, match="default value"):
    tl.Fn("F", lambda x, y=1: x)
  with pytest.raises(ValueError, match=r"\*args or \*\*kwargs"):
    tl.Fn("F", lambda *xs: xs[0])
  with pytest.raises(ValueError, match=r"\*args or \*\*kwargs"):
    tl.Fn("F", lambda x, **kw: x)


def test_wrong_number_of_outputs_is_an_error():
  with pytest.raises(tl.LayerError, match="returned 2 outputs, but n_out is 1"):
    run(tl.Fn("Two", lambda x: (x, x)), X)
  with pytest.raises(tl.LayerError, match="returned 1 output"):
    run(tl.Fn("One", lambda x: x, n_out=2), X)


def test_serial_with_side_outputs():
  layer = tl.SerialWithSideOutputs([tl.Dup(), tl.Dup()])
  assert (layer.n_in, layer.n_out) == (1, 3)
  close(run(layer, X), (X, X, X))
  split = tl.Fn("Split", lambda x: (x + 1, -x), n_out=2)
  layer = tl.SerialWithSideOutputs([split, split])
  # x -> (x+1, side -x) -> (x+2, side -(x+1)); side outputs go to the bottom in order.
  close(run(layer, X), (X + 2, -X, -(X + 1)))


def test_same_instance_shares_parameters():
  shared = Scale(2.0)
  model = tl.Serial(shared, Scale(3.0), shared)
  variables = model.init(jax.random.PRNGKey(0), X)
  assert set(variables["params"]) == {"layers_0", "layers_1"}
  close(model.apply(variables, X), 12 * X)
  grads = jax.grad(lambda v: model.apply(v, X).sum())(variables)
  # d/dw of w*3*w*x summed: 2*w*3*sum(x) = 2*2*3*6
  np.testing.assert_allclose(grads["params"]["layers_0"]["w"], 72.0)


def test_combinators_under_jit():
  model = tl.Serial(tl.Branch(tl.Add(), tl.Fn("Div", lambda x0, x1: x0 / 0.5)),
                    tl.Parallel(Scale(2.0), None), tl.Add())
  variables = model.init(jax.random.PRNGKey(0), (X, Y))
  eager = model.apply(variables, (X, Y))
  jitted = jax.jit(model.apply)(variables, (X, Y))
  close(eager, jitted)
  close(jitted, 2 * (X + Y) + 2 * X)


class CombinatorVariantsTest(LayerVariantsTest):
  """Combinators give the same results with and without jit."""

  __test__ = True
  _x, _y = jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))
  CASES = (
      (tl.Serial(tl.Dup(), tl.Add()), _x, lambda x: 2 * x),
      (tl.Branch(tl.Add(), tl.Fn("Div", lambda a, b: a / 5)), (_x, _y),
       lambda a, b: (a + b, a / 5)),
      (tl.Parallel(tl.Fn("Neg", lambda a: -a), None), (_x, _y), lambda a, b: (-a, b)),
      (tl.Residual(tl.Fn("Double", lambda a: 2 * a)), _x, lambda x: 3 * x),
      (tl.Select([1, 0, 0]), (_x, _y), lambda a, b: (b, a, a)),
      (tl.SerialWithSideOutputs([tl.Dup(), tl.Dup()]), _x, lambda x: (x, x, x)),
      (tl.Serial(tl.Concatenate(), tl.Split()), (_x, _y), lambda a, b: (a, b)),
      (tl.Gate(), (_x, 0.5 * _y, _y), lambda m, g, c: 0.5 * m + 0.5 * c),
  )
  BAD = ((tl.Serial(tl.Dense(4)), _x, jnp.ones((2, 5))),)
