"""Fuzzing: random small combinator trees on random stacks of random shapes and dtypes.

Whatever hypothesis draws, building the tree either works or raises a plain `ValueError`/
`TypeError` that names the combinator, and calling it (init, then apply under `jax.jit`) either
works or raises a `LayerError` whose message starts with the layer path, lists what every level
received, and whose path starts at the root. Nothing else escapes, nothing hangs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import declax.layers as tl
from declax.layers import LayerError

COMBINATORS = ("Serial", "Parallel", "Branch", "Residual", "Select", "Cond")

LEAVES = [
    lambda d: tl.Dense(d(st.integers(1, 4))),
    lambda d: tl.Relu(),
    lambda d: tl.Add(),
    lambda d: tl.Multiply(),
    lambda d: tl.Dup(),
    lambda d: tl.Swap(),
    lambda d: tl.Drop(),
    lambda d: tl.Concatenate(n_items=d(st.integers(2, 3))),
    lambda d: tl.Split(n_items=d(st.integers(2, 3))),
    lambda d: tl.LayerNorm(),
    lambda d: tl.Embedding(10, 3),
    lambda d: tl.Mean(),
    lambda d: tl.Flatten(),
    lambda d: tl.LogSoftmax(),
    lambda d: tl.Dropout(0.5, mode="eval"),
    lambda d: tl.Fn("Halve", lambda x: x / 2),
    lambda d: tl.Fn("Outer", lambda x, y: x[..., None] * y[..., None, :]),
    lambda d: tl.Fn("Two", lambda x: (x, x), n_out=d(st.integers(1, 2))),  # may lie
    lambda d: tl.Fn("Sum3", lambda x, y, z: x + y + z),
    lambda d: tl.CrossEntropyLoss(),
]


@st.composite
def layers(draw, depth: int = 0):
  if depth >= 2 or draw(st.booleans()):
    return draw(st.sampled_from(LEAVES))(draw)
  kind = draw(st.sampled_from(COMBINATORS))
  if kind == "Select":
    return tl.Select(draw(st.lists(st.integers(0, 3), min_size=0, max_size=4)),
                     n_in=draw(st.one_of(st.none(), st.integers(1, 4))))
  if kind == "Cond":
    condition = tl.Fn("Positive", lambda x: jnp.sum(x) > 0)
    false = draw(st.one_of(st.none(), layers(depth + 1)))
    return tl.Cond(condition, draw(layers(depth + 1)), false)
  children = draw(st.lists(layers(depth + 1), min_size=0, max_size=3))
  return getattr(tl, kind)(*children)


DTYPES = (np.float32, np.int32, np.bool_)


@st.composite
def stacks(draw):
  n_items = draw(st.integers(1, 3))
  items = []
  for _ in range(n_items):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    value = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) % 7
    items.append(jnp.asarray(value.astype(dtype)))
  return items[0] if n_items == 1 else tuple(items)


def _check_layer_error(error: LayerError, model: tl.Layer) -> None:
  text = str(error)
  assert text.startswith(f"{error.path}: "), text[:300]
  root = error.path.split(" > ")[0]
  assert root.startswith(model.label), (root, model.label)
  assert error.frames and all(f.received for f in error.frames)
  assert "created at " in text and "received " in text
  assert error.cause is not None and not isinstance(error.cause, LayerError)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@settings(max_examples=250, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@pytest.mark.slow
@given(data=st.data())
def test_random_trees_fail_only_with_declax_errors_that_name_the_path(data):
  try:
    model = data.draw(layers())
  except (ValueError, TypeError) as error:
    assert not isinstance(error, LayerError)
    text = str(error)
    assert any(name in text for name in COMBINATORS + ("Fn", "Concatenate", "Split")), text
    event("refused at construction")
    return
  stack = data.draw(stacks())
  try:
    variables = model.init(jax.random.PRNGKey(0), stack)
    out = jax.jit(lambda v, s: model.apply(v, s))(variables, stack)
  except LayerError as error:
    _check_layer_error(error, model)
    event(f"LayerError ({type(error.cause).__name__})")
    return
  event("ran")
  outputs = out if isinstance(out, tuple) else (out,)
  assert all(hasattr(o, "shape") for o in outputs)


def test_fuzzing_reaches_both_outcomes():
  # A tree that works and one that fails, so the property above is not vacuous.
  model = tl.Serial(tl.Dup(), tl.Parallel(tl.Dense(2), tl.Relu()), tl.Concatenate())
  assert model.apply(model.init(jax.random.PRNGKey(0), jnp.ones((2, 3))),
                     jnp.ones((2, 3))).shape == (2, 5)
  try:
    model.init(jax.random.PRNGKey(0), (jnp.ones((2, 3)), jnp.ones((4,))))
  except LayerError as error:
    raise AssertionError("a top-level Serial passes extra items through") from error
  bad = tl.Serial(tl.Branch(tl.Dense(2), tl.Add()))
  try:
    bad.init(jax.random.PRNGKey(0), jnp.ones((2, 3)))
  except LayerError as error:
    _check_layer_error(error, bad)
  else:
    raise AssertionError("Branch with Add on one item must fail")
