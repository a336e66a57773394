"""The train/eval steps: Serial(model, loss) semantics, weights, BatchNorm, purity under jit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax import sharding
from declax.training.state import make_init_fn
from declax.training.step import make_eval_step, make_train_step, run_model, run_on_stack
from tests.training.training_utils import ArrayBatches, tiny_classifier


def _state(model, tx, batch):
  specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in batch[: model.n_in]]
  return nn.unbox(make_init_fn(model, tx, specs)(jax.random.PRNGKey(0)))


@pytest.mark.slow
def test_loss_equals_serial_model_loss():
  model, loss = tiny_classifier(), tl.CrossEntropyLoss()
  batch = next(ArrayBatches())
  state = _state(model, optax.sgd(0.1), batch)
  weights = jnp.ones(batch[1].shape)
  expected = tl.Serial(model, loss).apply({"params": {"layers_0": state.params}},
                                          (*batch, weights))
  stack, _ = run_model(model, state.variables, batch)
  np.testing.assert_allclose(run_on_stack(loss, stack), expected, rtol=1e-6)


def test_run_on_stack_adds_weights_only_when_one_item_is_missing():
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
  targets = jnp.array([0, 0])
  assert float(run_on_stack(tl.WeightedCategoryAccuracy(), [logits, targets])) == 0.5
  weighted = run_on_stack(tl.WeightedCategoryAccuracy(), [logits, targets, jnp.array([1.0, 0])])
  assert float(weighted) == 1.0
  with pytest.raises(ValueError, match="takes 3 items"):
    run_on_stack(tl.WeightedCategoryAccuracy(), [logits])


def test_train_step_is_pure_and_updates_batch_stats():
  model = tiny_classifier(batch_norm=True, dropout=0.2)
  batch = next(ArrayBatches())
  tx = optax.adam(1e-2)
  state = _state(model, tx, batch)
  step = jax.jit(make_train_step(model, tl.CrossEntropyLoss(), tx))
  a, metrics_a = step(state, batch)
  b, metrics_b = step(state, batch)  # same inputs, same outputs: no hidden state or RNG
  np.testing.assert_array_equal(metrics_a.loss.compute(), metrics_b.loss.compute())
  assert int(a.step) == 1
  mean_before = state.model_state["batch_stats"]["layers_2"]["mean"]
  assert not np.array_equal(a.model_state["batch_stats"]["layers_2"]["mean"], mean_before)
  # Dropout masks change from step to step (the key is folded with the step).
  _, metrics_c = step(a.replace(params=state.params, opt_state=state.opt_state,
                                model_state=state.model_state), batch)
  assert metrics_c.loss.compute() != metrics_a.loss.compute()


def test_train_step_with_shardings_on_a_mesh():
  model, batch, tx = tiny_classifier(), next(ArrayBatches()), optax.sgd(0.1)
  mesh, rules = sharding.mesh_from_config(), sharding.rules_from_config()
  specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in batch[:1]]
  state, shardings = sharding.create_sharded_state(make_init_fn(model, tx, specs),
                                                   jax.random.PRNGKey(0), mesh, rules)
  step = jax.jit(make_train_step(model, tl.CrossEntropyLoss(), tx),
                 in_shardings=(shardings, sharding.batch_sharding(mesh)),
                 out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=0)
  with sharding.mesh_context(mesh, rules):
    new_state, metrics = step(state, sharding.shard_batch(batch, mesh))
  assert int(new_state.step) == 1 and np.isfinite(metrics.loss.compute())


def test_eval_step_weights_batches_by_their_weights():
  model = tl.Serial(tl.Fn("Id", lambda x: x))
  step = make_eval_step(model, [tl.WeightedCategoryAccuracy()], ["acc"])
  state = _state(model, optax.sgd(0.1), (jnp.zeros((2, 2)),))
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
  first = step(state, (logits, jnp.array([0, 1]), jnp.array([1.0, 1.0])))   # 2/2, weight 2
  second = step(state, (logits, jnp.array([1, 1]), jnp.array([1.0, 0.0])))  # 0/1, weight 1
  merged = first.merge(second).compute()
  np.testing.assert_allclose(merged["acc"], 2 / 3, rtol=1e-6)
  unweighted = step(state, (logits, jnp.array([0, 0])))                     # weight = size
  np.testing.assert_allclose(unweighted.compute()["acc"], 0.5)


def test_model_needing_more_inputs_than_the_batch_has():
  model = tl.Serial(tl.Add())
  state = _state(model, optax.sgd(0.1), (jnp.zeros((2,)), jnp.zeros((2,))))
  with pytest.raises(ValueError, match="takes 2 inputs, but the batch has only 1"):
    run_model(model, state.variables, (jnp.zeros((2,)),))


@pytest.mark.slow
def test_learning_rate_is_nan_only_when_unknown():
  model, batch = tiny_classifier(), next(ArrayBatches())
  plain = optax.adamw(3e-3)  # no inject_hyperparams, no schedule: the rate cannot be known
  step = make_train_step(model, tl.CrossEntropyLoss(), plain)
  _, metrics = step(_state(model, plain, batch), batch)
  assert np.isnan(metrics.compute()["learning_rate"])  # "unknown": the Loop leaves it out
  step = make_train_step(model, tl.CrossEntropyLoss(), plain, lr_schedule=lambda s: 3e-3)
  _, metrics = step(_state(model, plain, batch), batch)
  np.testing.assert_allclose(metrics.compute()["learning_rate"], 3e-3, rtol=1e-6)
