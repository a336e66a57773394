"""The Layer base: printing, LayerError chains, summary, with_mode, a stack-simulator property."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import declax
import declax.layers as tl
from declax.layers.base import Layer

THIS_FILE = os.path.basename(__file__)


class Mat(Layer):
  """x @ kernel with kernel (d_in, n); the shape contract is checked before the matmul."""

  n: int = 4
  d_in: int | None = None

  @property
  def default_label(self):
    return f"Mat_{self.n}"

  @nn.compact
  def forward(self, x):
    d_in = self.d_in or x.shape[-1]
    kernel = self.param("kernel", nn.initializers.ones, (d_in, self.n))
    if x.shape[-1] != d_in:
      raise ValueError(f"input last dim {x.shape[-1]} does not match kernel input dim {d_in}")
    return x @ kernel


class Counter(Layer):
  """Keeps a call count in a non-param collection and behaves differently by mode."""

  mode: str = "train"

  @nn.compact
  def forward(self, x):
    count = self.variable("stats", "count", lambda: jnp.zeros((), jnp.int32))
    if self.mode == "train" and not self.is_initializing():
      count.value += 1
    return x * (1.0 if self.mode == "train" else 0.0)


def test_print_tree_like_trax():
  model = tl.Serial(
      tl.Parallel(Mat(4), Mat(4)),
      tl.Concatenate(),
      tl.Branch(tl.Add(), tl.Select([0, 1, 1])),
      name="Model",
  )
  assert str(model) == (
      "Model_in3_out4[\n"
      "  Parallel_in2_out2[\n    Mat_4\n    Mat_4\n  ]\n"
      "  Concatenate_in2\n"
      "  Branch_in2_out4[\n    Add_in2\n    Select[0,1,1]_in2_out3\n  ]\n"
      "]")
  assert str(tl.Serial(tl.Dup(), name="Branch")) == "Branch_out2[\n  Dup_out2\n]"


def test_error_chain_names_path_location_and_shapes():
  model = tl.Serial(Mat(8), tl.Branch(Mat(2), tl.Serial(Mat(3), Mat(5, d_in=7))))
  with pytest.raises(tl.LayerError) as info:
    model.init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
  error = info.value
  assert error.path == "Serial[1] > Branch[1] > Serial[1] > Mat_5"
  text = str(error)
  assert text.startswith("Serial[1] > Branch[1] > Serial[1] > Mat_5: ValueError: input last dim 3")
  assert f"{THIS_FILE}:" in text  # where the user created each layer
  assert "received f32[2,3]" in text and "received f32[2,8]" in text
  assert isinstance(error.cause, ValueError) and error.__cause__ is error.cause
  assert isinstance(error, ValueError)


def test_error_reads_the_same_under_jit():
  model = tl.Serial(Mat(8), Mat(5, d_in=7))
  variables = tl.Serial(Mat(8), Mat(5, d_in=8)).init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
  with pytest.raises(tl.LayerError) as eager:
    model.apply(variables, jnp.ones((2, 3)))
  with pytest.raises(tl.LayerError) as jitted:
    jax.jit(model.apply)(variables, jnp.ones((2, 3)))
  assert eager.value.path == jitted.value.path == "Serial[1] > Mat_5"
  assert "received f32[2,8]" in str(jitted.value)


def test_arity_error_message():
  model = tl.Serial(tl.Add(), tl.Add())
  with pytest.raises(tl.LayerError, match=r"Serial_in3 got 2 input\(s\), expects 3"):
    model.apply({}, (jnp.ones(2), jnp.ones(2)))


def test_user_name_survives_into_error_path():
  model = tl.Serial(tl.Serial(Mat(5, d_in=7), name="Head"))
  with pytest.raises(tl.LayerError) as info:
    model.init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
  assert info.value.path == "Serial[0] > Head[0] > Mat_5"


def test_summary_table():
  model = tl.Serial(Mat(8), tl.Dup(), tl.Parallel(Mat(2), Mat(3)))
  table = declax.summary(model, jnp.zeros((4, 3)))
  lines = table.splitlines()
  assert lines[0].split() == ["path", "layer", "n_in->n_out", "outputs", "params"]
  assert lines[2].split() == ["(root)", "Serial_out2", "1->2", "f32[4,2],", "f32[4,3]", "64"]
  assert any(line.split()[:2] == ["layers_2/layers_1", "Mat_3"] and line.endswith("24")
             for line in lines)
  assert lines[-1] == "Total parameters: 64"


def test_with_mode_keeps_structure_and_sharing():
  shared = Counter()
  model = tl.Serial(shared, Mat(2), shared)
  variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 2)))
  out, state = model.apply(variables, jnp.ones((1, 2)), mutable=["stats"])
  assert int(state["stats"]["layers_0"]["count"]) == 2  # one layer, called twice
  eval_model = tl.with_mode(model, "eval")
  assert eval_model.layers[0] is eval_model.layers[2] and eval_model.layers[0].mode == "eval"
  assert model.layers[0].mode == "train"
  np.testing.assert_allclose(eval_model.apply(variables, jnp.ones((1, 2))), 0.0)
  with pytest.raises(ValueError, match="mode must be one of"):
    tl.with_mode(model, "serve")
  with pytest.raises(ValueError, match="mode must be one of"):
    Counter(mode="test")


# ------------------------------------------------------------------------------------------------
# Property: random compositions of Fn layers agree with a plain Python stack simulator.
# ------------------------------------------------------------------------------------------------

# Each leaf is (n_in, n_out, seed); its function maps inputs to n_out distinct affine mixes.


def leaf_fn(n_in, n_out, seed):
  def f(*xs):
    base = sum((i + 1) * x for i, x in enumerate(xs)) if xs else jnp.zeros(3)
    outs = tuple(base * (seed + 1) + j for j in range(n_out))
    return outs[0] if n_out == 1 else outs

  def wrapped(*xs):
    return f(*xs)

  params = ", ".join(f"x{i}" for i in range(n_in))
  namespace = {"impl": wrapped}
  exec(f"def g({params}):\n  return impl({params})", namespace)  # fixed positional arity
  return namespace["g"]


leaves = st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 9))
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.tuples(st.just("serial"), st.lists(children, min_size=0, max_size=3)),
        st.tuples(st.just("branch"), st.lists(children, min_size=1, max_size=3)),
        st.tuples(st.just("parallel"), st.lists(children, min_size=2, max_size=3)),
    ),
    max_leaves=6,
)


def build(tree):
  if tree[0] in ("serial", "branch", "parallel"):
    kind, children = tree
    layers = [build(c) for c in children]
    if any(layer is None for layer in layers):
      return None
    if kind == "parallel" and any(layer.n_in == 0 for layer in layers):
      return None  # refused at construction (tested elsewhere)
    return {"serial": tl.Serial, "branch": tl.Branch, "parallel": tl.Parallel}[kind](*layers)
  n_in, n_out, seed = tree
  return tl.Fn(f"F{seed}", leaf_fn(n_in, n_out, seed), n_out=n_out)


def simulate(tree, stack):
  """Plain-Python reference: returns (n_in, n_out, outputs) for a stack (list, top first)."""
  if tree[0] == "serial":
    total = needed = 0
    for child in tree[1]:
      c_in, c_out, _ = simulate(child, None)
      total += c_in
      needed = max(needed, total)
      total -= c_out
    if not tree[1]:
      needed, total = 1, 0
    n_in, n_out = needed, needed - total
    if stack is None:
      return n_in, n_out, None
    items = list(stack[:n_in])
    for child in tree[1]:
      c_in, _, outs = simulate(child, items)
      items = list(outs) + items[c_in:]
    return n_in, n_out, items
  if tree[0] in ("branch", "parallel"):
    arities = [simulate(c, None)[:2] for c in tree[1]]
    if tree[0] == "branch":
      n_in = max(a[0] for a in arities)
    else:
      n_in = sum(a[0] for a in arities)
    n_out = sum(a[1] for a in arities)
    if stack is None:
      return n_in, n_out, None
    outs, start = [], 0
    for child, (c_in, _) in zip(tree[1], arities, strict=True):
      span = stack[:c_in] if tree[0] == "branch" else stack[start : start + c_in]
      outs.extend(simulate(child, span)[2])
      start += c_in
    return n_in, n_out, outs
  n_in, n_out, seed = tree
  if stack is None:
    return n_in, n_out, None
  xs = stack[:n_in]
  base = sum((i + 1) * x for i, x in enumerate(xs)) if xs else np.zeros(3)
  return n_in, n_out, [base * (seed + 1) + j for j in range(n_out)]


@settings(max_examples=60, deadline=None)
@given(trees)
def test_random_compositions_match_stack_simulator(tree):
  if not isinstance(tree[0], str):
    tree = ("serial", [tree])
  layer = build(tree)
  if layer is None:
    return
  n_in, n_out, _ = simulate(tree, None)
  assert (layer.n_in, layer.n_out) == (n_in, n_out)
  stack = [np.full(3, float(i + 1), np.float32) for i in range(n_in)]
  expected = simulate(tree, stack)[2]
  result = layer.apply({}, tuple(stack) if n_in != 1 else stack[0])
  got = [result] if n_out == 1 else list(result)
  assert len(got) == len(expected)
  for g, e in zip(got, expected, strict=True):
    np.testing.assert_allclose(np.asarray(g), e, rtol=1e-5)
