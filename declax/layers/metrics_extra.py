"""More of Trax's metrics: sequence accuracies, unweighted binary cross-entropy on logits, the
smoothed L1 loss, F-scores and weighted sums.

```python
tl.MaskedSequenceAccuracy().apply({}, (logits, targets, weights))   # scalar in [0, 1]
```
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from declax.layers.base import Layer
from declax.layers.dtypes import promote
from declax.layers.metrics import (
  Classified,
  _float,
  _same_shape,
  _weighted_mean,
  log_probs_cross_entropy,
  probs_binary_cross_entropy,
)
from declax.layers.metrics import _Metric as _WeightsBroadcast  # weights broadcast to targets


class _Metric(Layer):
  """A metric's arity is a class attribute (`n_in = 3`); it returns one float32 scalar."""

  n_in = 2


class MaskedSequenceAccuracy(_Metric):
  """Fraction of sequences whose argmax predictions match the targets at every position with a
  nonzero weight: `(model_output (b, t, n), targets (b, t), weights) -> scalar`.

  ```python
  tl.MaskedSequenceAccuracy().apply({}, (logits, targets, weights))
  ```
  """

  n_in = 3

  def forward(self, model_output, targets, weights):
    predictions = jnp.argmax(model_output, axis=-1)
    _same_shape(predictions, targets)
    accurate = jnp.logical_or(predictions == targets, jnp.equal(weights, 0))
    return jnp.mean(jnp.all(accurate, axis=-1).astype(jnp.float32))


class SequenceAccuracy(Classified):
  """Fraction of sequences where `classifier(model_output)` (default `ArgMax()`) matches the
  targets at every position with positive weight (Trax's deprecated form of
  `MaskedSequenceAccuracy`).

  ```python
  tl.SequenceAccuracy().apply({}, (logits, targets, weights))
  ```
  """

  def forward(self, model_output, targets, weights):
    not_correct = (1.0 - self.correct(model_output, targets)) * _float(weights)
    not_correct_seq = jnp.sum(not_correct, axis=tuple(range(1, not_correct.ndim)))
    return jnp.mean(1.0 - jnp.minimum(1.0, not_correct_seq))


class BinaryCrossEntropy(_Metric):
  """Mean binary cross-entropy of logits against 0/1 targets (no weights), as Trax's
  `BinaryCrossEntropy`: `-mean(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))`.

  ```python
  tl.BinaryCrossEntropy().apply({}, (jnp.array([9., -9.]), jnp.array([1, 0])))   # 0.000123
  ```
  """

  def forward(self, model_output, targets):
    x, t = _float(model_output), _float(targets)
    # log(sigmoid(x)) and log(1 - sigmoid(x)) in their overflow-free forms
    return jnp.mean(-(t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x)))


class SmoothL1Loss(_Metric):
  """Weighted mean Huber loss: `0.5 d**2` where `d = |y - t| < 1`, else `d - 0.5`.

  ```python
  tl.SmoothL1Loss().apply({}, (predictions, targets, weights))
  ```
  """

  n_in = 3

  def forward(self, model_output, targets, weights):
    _same_shape(model_output, targets)
    _same_shape(model_output, weights)
    distance = jnp.abs(_float(model_output) - _float(targets))
    smooth = jnp.where(distance < 1, 0.5 * distance**2, distance - 0.5)
    return jnp.sum(_float(weights) * smooth) / jnp.sum(_float(weights))


def _f_scores(model_output, targets, beta: float, first: int):
  """Per-category F-scores and target counts for categories `first .. n - 1`."""
  predictions = jnp.argmax(model_output, axis=-1)
  categories = jax.lax.broadcast_to_rank(jnp.arange(first, model_output.shape[-1]),
                                         predictions.ndim + 1)
  predicted = predictions[..., None] == categories
  actual = jnp.asarray(targets)[..., None] == categories
  axes = tuple(range(predicted.ndim - 1))
  n_correct = jnp.sum(predicted & actual, axis=axes)
  n_predicted, n_targets = jnp.sum(predicted, axis=axes), jnp.sum(actual, axis=axes)

  def safe(x):  # 0/0 -> 0, as in Trax
    return jnp.where(jnp.isnan(x), 0.0, x)

  precision = safe(n_correct / n_predicted)
  recall = safe(n_correct / n_targets)
  beta2 = beta**2
  return safe((beta2 + 1) * precision * recall / (beta2 * precision + recall)), n_targets


class MacroAveragedFScore(_Metric):
  """F-score averaged over categories `initial_category_index .. n - 1`, each counting equally.

  ```python
  tl.MacroAveragedFScore(initial_category_index=1).apply({}, (logits, targets))
  ```
  """

  beta: float = 1.0
  initial_category_index: int = 0

  def forward(self, model_output, targets):
    scores, _ = _f_scores(model_output, targets, self.beta, self.initial_category_index)
    return jnp.mean(scores)


class WeightedFScore(_Metric):
  """F-score averaged over categories weighted by their number of targets.

  ```python
  tl.WeightedFScore().apply({}, (logits, targets))
  ```
  """

  beta: float = 1.0
  initial_category_index: int = 0

  def forward(self, model_output, targets):
    scores, counts = _f_scores(model_output, targets, self.beta, self.initial_category_index)
    return jnp.average(scores, weights=counts.astype(scores.dtype))


class WeightedSum(_Metric):
  """`sum(values * weights)`: `(values, weights) -> scalar`.

  ```python
  tl.WeightedSum().apply({}, (jnp.array([1., 2.]), jnp.array([1., 0.])))   # 1.
  ```
  """

  def forward(self, values, weights):
    return jnp.sum(jnp.multiply(*promote(values, weights)))


class CrossEntropySum(_Metric):
  """`sum(weights * -log_probs[target])` on log-probabilities (e.g. after `LogSoftmax`).

  ```python
  tl.CrossEntropySum().apply({}, (log_probs, targets, weights))
  ```
  """

  n_in = 3

  def forward(self, model_output, targets, weights):
    return jnp.sum(log_probs_cross_entropy(model_output, targets) * _float(weights))


class BinaryCrossEntropySum(_Metric):
  """Trax's `BinaryCrossEntropySum` on probabilities: the batch-mean binary cross-entropy
  times `sum(weights)`.

  ```python
  tl.BinaryCrossEntropySum().apply({}, (probs, targets, weights))
  ```
  """

  n_in = 3

  def forward(self, model_output, targets, weights):
    return jnp.sum(probs_binary_cross_entropy(model_output, targets) * _float(weights))


class SigmoidBinaryCrossEntropyLoss(_WeightsBroadcast):
  """Weighted mean binary cross-entropy of *logits* against 0/1 targets (declax's own; Trax's
  `BinaryCrossEntropyLoss` takes probabilities). `model_output` has the targets' shape, or that
  shape plus a trailing axis of size 1.

  ```python
  tl.SigmoidBinaryCrossEntropyLoss().apply({}, (logits, labels, weights))
  ```
  """

  n_in = 3

  def forward(self, model_output, targets, weights):
    if jnp.shape(model_output) == jnp.shape(targets) + (1,):
      model_output = model_output[..., 0]
    _same_shape(model_output, targets)
    values = optax.sigmoid_binary_cross_entropy(_float(model_output), _float(targets))
    return _weighted_mean(values, targets, weights)
