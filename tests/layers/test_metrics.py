"""Tests for declax.layers.metrics: Trax's arities and semantics, numerics against optax/jax.nn."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import declax.layers as tl
from tests.layers.jit_variants import LayerVariantsTest

LOGITS = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 5))
TARGETS = jnp.array([[0, 1, 2], [3, 4, 0], [1, 1, 1], [2, 2, 4]])
WEIGHTS = jnp.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])


def _ce(logits, targets):
  return -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]


def _weighted(values, weights):
  weights = jnp.broadcast_to(weights, values.shape)
  return jnp.sum(values * weights) / jnp.sum(weights)


def test_arity_and_printing():
  expected = {
      tl.CategoryCrossEntropy(): "CategoryCrossEntropy_in2",
      tl.WeightedCategoryCrossEntropy(): "WeightedCategoryCrossEntropy_in3",
      tl.CrossEntropyLoss(): "CrossEntropyLoss_in3",
      tl.CategoryAccuracy(): "CategoryAccuracy_in2",
      tl.WeightedCategoryAccuracy(): "WeightedCategoryAccuracy_in3",
      tl.Accuracy(): "Accuracy_in3",
      tl.BinaryCrossEntropyLoss(): "BinaryCrossEntropyLoss_in3",
      tl.L2Loss(): "L2Loss_in3",
  }
  for layer, text in expected.items():
    assert str(layer) == text
    assert layer.n_out == 1


def test_category_cross_entropy():
  loss = tl.CategoryCrossEntropy().apply({}, (LOGITS, TARGETS))
  np.testing.assert_allclose(loss, _ce(LOGITS, TARGETS).mean(), rtol=1e-6)
  np.testing.assert_allclose(
      loss, optax.softmax_cross_entropy_with_integer_labels(LOGITS, TARGETS).mean(), rtol=1e-6)
  assert loss.shape == () and loss.dtype == jnp.float32


def test_label_smoothing_matches_trax_formula():
  smoothing = 0.2
  loss = tl.CategoryCrossEntropy(label_smoothing=smoothing).apply({}, (LOGITS, TARGETS))
  targets = (1 - smoothing) * jax.nn.one_hot(TARGETS, 5) + smoothing / 5
  expected = -jnp.sum(targets * jax.nn.log_softmax(LOGITS), -1).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  weighted = tl.WeightedCategoryCrossEntropy(label_smoothing=smoothing)
  per_item = -jnp.sum(targets * jax.nn.log_softmax(LOGITS), -1)
  np.testing.assert_allclose(weighted.apply({}, (LOGITS, TARGETS, WEIGHTS)),
                             _weighted(per_item, WEIGHTS), rtol=1e-6)
  with pytest.raises(ValueError, match="label_smoothing"):
    tl.CategoryCrossEntropy(label_smoothing=1.5)


def test_weighted_category_cross_entropy_and_broadcast_weights():
  layer = tl.WeightedCategoryCrossEntropy()
  np.testing.assert_allclose(layer.apply({}, (LOGITS, TARGETS, WEIGHTS)),
                             _weighted(_ce(LOGITS, TARGETS), WEIGHTS), rtol=1e-6)
  per_position = jnp.array([1.0, 0.0, 2.0])  # broadcasts over the batch
  np.testing.assert_allclose(layer.apply({}, (LOGITS, TARGETS, per_position)),
                             _weighted(_ce(LOGITS, TARGETS), per_position), rtol=1e-6)
  np.testing.assert_allclose(layer.apply({}, (LOGITS, TARGETS, jnp.float32(3.0))),
                             _ce(LOGITS, TARGETS).mean(), rtol=1e-6)


def test_cross_entropy_loss_takes_log_probabilities():
  log_probs = jax.nn.log_softmax(LOGITS)
  loss = tl.CrossEntropyLoss().apply({}, (log_probs, TARGETS, WEIGHTS))
  np.testing.assert_allclose(loss, _weighted(_ce(LOGITS, TARGETS), WEIGHTS), rtol=1e-6)
  pipeline = tl.Serial(tl.LogSoftmax(), tl.CrossEntropyLoss())
  np.testing.assert_allclose(pipeline.apply({}, (LOGITS, TARGETS, WEIGHTS)), loss, rtol=1e-6)


def test_accuracies():
  correct = (LOGITS.argmax(-1) == TARGETS).astype(jnp.float32)
  assert 0 < correct.mean() < 1
  np.testing.assert_allclose(tl.CategoryAccuracy().apply({}, (LOGITS, TARGETS)), correct.mean())
  for layer in (tl.WeightedCategoryAccuracy(), tl.Accuracy()):
    np.testing.assert_allclose(layer.apply({}, (LOGITS, TARGETS, WEIGHTS)),
                               _weighted(correct, WEIGHTS), rtol=1e-6)


def test_accuracy_with_custom_classifier():
  classifier = tl.Fn("AlwaysTwo", lambda x: jnp.full(x.shape[:-1], 2))
  accuracy = tl.Accuracy(classifier=classifier)
  assert accuracy.classifier is classifier and str(accuracy) == "Accuracy_in3"
  expected = _weighted((TARGETS == 2).astype(jnp.float32), WEIGHTS)
  np.testing.assert_allclose(accuracy.apply({}, (LOGITS, TARGETS, WEIGHTS)), expected)
  assert isinstance(tl.Accuracy().classifier, tl.ArgMax)


def test_sigmoid_binary_cross_entropy_loss_takes_logits():
  logits = jax.random.normal(jax.random.PRNGKey(1), (6,))
  labels = jnp.array([0, 1, 1, 0, 1, 0])
  weights = jnp.array([1.0, 1.0, 0.0, 2.0, 1.0, 1.0])
  expected = _weighted(optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32)),
                       weights)
  float_labels = labels.astype(jnp.float32)
  manual = -(float_labels * jnp.log(jax.nn.sigmoid(logits))
             + (1 - float_labels) * jnp.log(1 - jax.nn.sigmoid(logits)))
  np.testing.assert_allclose(expected, _weighted(manual, weights), rtol=1e-5)
  layer = tl.SigmoidBinaryCrossEntropyLoss()  # Trax's BinaryCrossEntropyLoss takes probabilities
  np.testing.assert_allclose(layer.apply({}, (logits, labels, weights)), expected, rtol=1e-6)
  np.testing.assert_allclose(layer.apply({}, (logits[:, None], labels, weights)), expected,
                             rtol=1e-6)  # a trailing unit axis on the logits is accepted


def test_l2_loss():
  predictions = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
  targets = jnp.zeros((4, 3))
  weights = jnp.array([[1.0], [0.0], [1.0], [2.0]])
  loss = tl.L2Loss().apply({}, (predictions, targets, weights))
  np.testing.assert_allclose(loss, _weighted(predictions**2, weights), rtol=1e-6)


def test_bfloat16_inputs_give_float32_losses():
  logits = LOGITS.astype(jnp.bfloat16)
  weights = WEIGHTS.astype(jnp.bfloat16)
  for layer, inputs in [
      (tl.CategoryCrossEntropy(), (logits, TARGETS)),
      (tl.WeightedCategoryCrossEntropy(), (logits, TARGETS, weights)),
      (tl.CrossEntropyLoss(), (jax.nn.log_softmax(logits), TARGETS, weights)),
      (tl.WeightedCategoryAccuracy(), (logits, TARGETS, weights)),
      (tl.L2Loss(), (logits, logits + 1, 1.0)),
  ]:
    assert layer.apply({}, inputs).dtype == jnp.float32, str(layer)
  np.testing.assert_allclose(tl.CategoryCrossEntropy().apply({}, (logits, TARGETS)),
                             _ce(logits.astype(jnp.float32), TARGETS).mean(), rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_shape_errors_name_both_shapes(jit):
  model = tl.Serial(tl.Dense(5), tl.WeightedCategoryCrossEntropy())
  variables = model.init(jax.random.PRNGKey(0), (LOGITS, TARGETS, WEIGHTS))
  apply = jax.jit(model.apply) if jit else model.apply
  with pytest.raises(tl.LayerError) as info:
    apply(variables, (LOGITS, TARGETS[:, :2], WEIGHTS[:, :2]))
  message = str(info.value)
  assert message.startswith("Serial[1] > WeightedCategoryCrossEntropy: ValueError")
  assert "i32[4,2]" in message and "f32[4,3,5]" in message and "(4, 3)" in message
  with pytest.raises(tl.LayerError, match=r"weights f32\[4\] must broadcast.*i32\[4,3\]"):
    apply(variables, (LOGITS, TARGETS, jnp.ones(4)))


def test_other_errors():
  with pytest.raises(tl.LayerError,
                     match=r"TypeError: \[Chex\].*targets must be integer.*f32\[4,3\]"):
    tl.CategoryCrossEntropy().apply({}, (LOGITS, TARGETS.astype(jnp.float32)))
  with pytest.raises(tl.LayerError, match=r"L2Loss: ValueError: \[Chex\].*model_output f32\[4,3\] "
                     r"and targets f32\[4\]"):
    tl.L2Loss().apply({}, (jnp.ones((4, 3)), jnp.ones(4), 1.0))
  with pytest.raises(tl.LayerError, match=r"got 2 input\(s\), expects 3"):
    tl.WeightedCategoryCrossEntropy().apply({}, (LOGITS, TARGETS))


def test_loss_composes_and_differentiates():
  model = tl.Serial(tl.Embedding(10, 8), tl.Dense(5))
  ids = jnp.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 1, 2]])
  with_loss = tl.Serial(model, tl.WeightedCategoryCrossEntropy())
  variables = with_loss.init(jax.random.PRNGKey(0), (ids, TARGETS, WEIGHTS))
  loss, grads = jax.value_and_grad(lambda v: with_loss.apply(v, (ids, TARGETS, WEIGHTS)))(
      variables)
  assert np.isfinite(loss) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  eval_metric = tl.Serial(model, tl.Accuracy())
  assert 0.0 <= eval_metric.apply(variables, (ids, TARGETS, WEIGHTS)) <= 1.0


class MetricVariantsTest(LayerVariantsTest):
  """Loss and metric layers give the same results with and without jit."""

  __test__ = True
  _logits = jnp.log(jnp.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
  _targets, _weights = jnp.array([0, 1]), jnp.array([1.0, 3.0])
  CASES = (
      (tl.CrossEntropyLoss(), (_logits, _targets, _weights),
       lambda lp, t, w: -(lp[0, 0] * 1.0 + lp[1, 1] * 3.0) / 4.0),
      (tl.WeightedCategoryAccuracy(), (_logits, _targets, _weights), lambda *_: 0.25),
      (tl.L2Loss(), (_weights, _weights, _weights), lambda *_: 0.0),
  )
  BAD = (
      (tl.CrossEntropyLoss(), (_logits, _targets, _weights), (_logits, _targets[:1], _weights)),
      (tl.CrossEntropyLoss(), (_logits, _targets, _weights),  # float ids are valid, as in Trax
       (_logits, _targets.astype(bool), _weights)),
      (tl.CrossEntropyLoss(), (_logits, _targets, _weights),
       (_logits, _targets, jnp.ones((3,)))),
  )
