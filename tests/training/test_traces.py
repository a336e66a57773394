"""The train and eval steps compile once per batch shape over a multi-step run."""

import chex
import flax.linen as nn
import jax
import optax
import pytest

import declax.layers as tl
from declax.training.state import make_init_fn
from declax.training.step import make_eval_step, make_train_step
from tests.training.training_utils import ArrayBatches, tiny_classifier


def test_train_and_eval_steps_trace_once_per_batch_shape():
  model = tiny_classifier(batch_norm=True, dropout=0.1)
  tx = optax.adam(1e-2)
  first = next(ArrayBatches(batch_size=8))
  specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in first[:1]]
  state = nn.unbox(make_init_fn(model, tx, specs)(jax.random.PRNGKey(0)))
  # Two batch shapes below, so at most two traces each; a retrace per step would fail here.
  train_step = jax.jit(chex.assert_max_traces(make_train_step(model, tl.CrossEntropyLoss(), tx),
                                              n=2))
  eval_step = jax.jit(chex.assert_max_traces(make_eval_step(
      tl.with_mode(model, "eval"), [tl.CrossEntropyLoss(), tl.Accuracy()], ["loss", "acc"]), n=2))
  try:
    for batch_size in (8, 4):
      batches = ArrayBatches(batch_size=batch_size, with_weights=batch_size == 4)
      for _ in range(4):
        batch = next(batches)
        state, metrics = train_step(state, batch)
        eval_step(state, batch).compute()
    assert int(state.step) == 8 and float(metrics.loss.compute()) > 0
    with pytest.raises(AssertionError, match="traced > 2 times"):  # a third shape: a third trace
      train_step(state, next(ArrayBatches(batch_size=2)))
  finally:
    chex.clear_trace_counter()
