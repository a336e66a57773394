"""Loss and metric layers: `(model_output, targets[, weights]) -> scalar`, as in Trax.

Each layer reduces a batch to one float32 scalar (inputs in bfloat16 are upcast first).
Weighted layers take `weights` that broadcast to the shape of `targets` and return
`sum(values * weights) / sum(weights)` (NaN when every weight is zero, as in Trax).

```python
model_with_loss = tl.Serial(model, tl.WeightedCategoryCrossEntropy())
loss = model_with_loss.apply(variables, (inputs, targets, weights))
```
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax

from declax.layers.base import Layer
from declax.layers.core import ArgMax
from declax.layers.dtypes import at_least_float32
from declax.layers.stack import describe


def _float(x):
  return jnp.asarray(x).astype(at_least_float32(x))


def _same_shape(model_output, targets) -> None:
  chex.assert_equal_shape((model_output, targets), exception_type=ValueError, custom_message=(
      f"model_output {describe([model_output])} and targets {describe([targets])} must have the "
      "same shape"))


def _weighted_mean(values, targets, weights):
  """`sum(values * weights) / sum(weights)`, weights broadcast to the targets' shape."""
  weights = jnp.broadcast_to(_float(weights), jnp.shape(targets))
  return jnp.sum(values * weights) / jnp.sum(weights)


def log_probs_cross_entropy(log_probs, targets):
  """`-sum(one_hot(targets) * log_probs, -1)` (Trax's `_CrossEntropy`): category ids of shape
  `log_probs.shape[:-1]` (integer, or float as Trax allows), or target distributions of
  `log_probs`' own shape (soft targets)."""
  if jnp.result_type(targets) == jnp.bool_:  # (chex states required dtypes, not excluded ones)
    raise TypeError("targets must be class ids (integer or float) or target distributions, "
                    f"got {describe([targets])}")
  if jnp.ndim(log_probs) and jnp.shape(targets) == jnp.shape(log_probs):
    distribution = _float(targets)
  else:
    chex.assert_shape(targets, jnp.shape(log_probs)[:-1], exception_type=ValueError,
                      custom_message=(
        f"targets {describe([targets])} must have the shape of model_output "
        f"{describe([log_probs])} without its last (class) axis"))
    # Trax's one_hot: float ids compare equal to their integer class (jax.nn.one_hot wants ints)
    targets = jnp.asarray(targets)
    classes = jax.lax.broadcasted_iota(targets.dtype, (*targets.shape, log_probs.shape[-1]),
                                       targets.ndim)
    distribution = (targets[..., None] == classes).astype(jnp.float32)
  return -jnp.sum(_float(log_probs) * distribution, axis=-1)


def probs_binary_cross_entropy(probs, targets):
  """Trax's `_BinaryCrossEntropy`: `-(t log p + (1 - t) log(1 - p))` summed, over the batch
  size (axis 0), on probabilities `p` of the targets' shape."""
  _same_shape(probs, targets)
  p, t = _float(probs), _float(targets)
  return -jnp.sum(t * jnp.log(p) + (1 - t) * jnp.log(1 - p)) / p.shape[0]


def _category_cross_entropy(model_output, targets, label_smoothing):
  logits = _float(model_output)
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  n_classes = logits.shape[-1]
  labels = optax.smooth_labels(jax.nn.one_hot(targets, n_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits, labels)


class _Metric(Layer):
  """Base of metric layers: `(model_output, targets)` by default, a 0-d float32 output."""

  n_in = 2

  def contract(self, model_output, targets, weights=None):
    if weights is not None:
      chex.assert_is_broadcastable(jnp.shape(weights), jnp.shape(targets),
                                   exception_type=ValueError, custom_message=(
          f"weights {describe([weights])} must broadcast to the targets' shape "
          f"{describe([targets])}"))


class _Categorical(_Metric):
  """Base of classification metrics: `model_output (..., n_classes)`, integer `targets (...)`."""

  def contract(self, model_output, targets, weights=None):
    chex.assert_shape(targets, jnp.shape(model_output)[:-1], exception_type=ValueError,
                      custom_message=(
        f"targets {describe([targets])} must have the shape of model_output "
        f"{describe([model_output])} without its last (class) axis"))
    chex.assert_type(targets, int, exception_type=TypeError,
                     custom_message=f"targets must be integer class ids, got {describe([targets])}")
    super().contract(model_output, targets, weights)


class _Smoothed(_Categorical):
  label_smoothing: float | None = None

  def __post_init__(self):
    if self.label_smoothing is not None and not 0.0 <= self.label_smoothing <= 1.0:
      raise ValueError(f"{type(self).__name__}: label_smoothing must be in [0, 1], got "
                       f"{self.label_smoothing}")
    super().__post_init__()


class CategoryCrossEntropy(_Smoothed):
  """Mean cross-entropy of logits `(..., n)` against integer targets `(...)`.

  With `label_smoothing=e` the target distribution is `(1 - e) * one_hot + e / n`.

  ```python
  tl.CategoryCrossEntropy().apply({}, (logits, targets))   # scalar, float32
  ```
  """

  def forward(self, model_output, targets):
    return jnp.mean(_category_cross_entropy(model_output, targets, self.label_smoothing))


class WeightedCategoryCrossEntropy(_Smoothed):
  """Like `CategoryCrossEntropy`, averaged with `weights` (broadcast to the targets' shape).

  ```python
  tl.WeightedCategoryCrossEntropy().apply({}, (logits, targets, mask))
  ```
  """

  n_in = 3

  def forward(self, model_output, targets, weights):
    values = _category_cross_entropy(model_output, targets, self.label_smoothing)
    return _weighted_mean(values, targets, weights)


class CrossEntropyLoss(_Metric):
  """Weighted mean of `-model_output[target]`, where `model_output` are log-probabilities
  (e.g. after `LogSoftmax`) — Trax 1.4's `CrossEntropyLoss`. Targets are category ids (integer,
  or float as Trax allows), or target distributions of `model_output`'s shape (soft targets).

  ```python
  loss = tl.Serial(tl.LogSoftmax(), tl.CrossEntropyLoss())   # on (logits, targets, weights)
  ```
  """

  n_in = 3

  def contract(self, model_output, targets, weights=None):
    if jnp.shape(targets) == jnp.shape(model_output):  # soft targets: weights per distribution
      if weights is not None:
        chex.assert_is_broadcastable(jnp.shape(weights), jnp.shape(targets)[:-1],
                                     exception_type=ValueError, custom_message=(
            f"weights {describe([weights])} must broadcast to the targets' shape without "
            f"their class axis, {tuple(jnp.shape(targets)[:-1])}"))
      return
    chex.assert_shape(targets, jnp.shape(model_output)[:-1], exception_type=ValueError,
                      custom_message=(
        f"targets {describe([targets])} must have the shape of model_output "
        f"{describe([model_output])} without its last (class) axis, or its whole shape for "
        "target distributions"))
    super().contract(model_output, targets, weights)

  def forward(self, model_output, targets, weights):
    values = log_probs_cross_entropy(model_output, targets)
    return _weighted_mean(values, targets if values.shape == jnp.shape(targets) else values,
                          weights)


def _accuracy_values(model_output, targets):
  return (jnp.argmax(model_output, axis=-1) == targets).astype(jnp.float32)


class CategoryAccuracy(_Categorical):
  """Fraction of items whose argmax over the last axis equals the integer target.

  ```python
  tl.CategoryAccuracy().apply({}, (logits, targets))
  ```
  """

  def forward(self, model_output, targets):
    return jnp.mean(_accuracy_values(model_output, targets))


class WeightedCategoryAccuracy(_Categorical):
  """Weighted fraction of correct argmax predictions: `(model_output, targets, weights)`."""

  n_in = 3

  def forward(self, model_output, targets, weights):
    return _weighted_mean(_accuracy_values(model_output, targets), targets, weights)


class Classified(_Metric):
  """Base of metrics on `classifier(model_output)` (default `ArgMax()`), `(model_output,
  targets, weights) -> scalar`; prints without its classifier (`Accuracy_in3`), as in Trax."""

  classifier: Layer | None = None
  n_in = 3

  def __post_init__(self):
    if self.classifier is None:
      object.__setattr__(self, "classifier", ArgMax())
    super().__post_init__()

  @property
  def sublayers(self) -> tuple:
    return ()

  def correct(self, model_output, targets):
    """1.0 where the classifier's prediction equals the target, else 0.0 (float32)."""
    (predictions,) = self.call_child(self.classifier, [model_output])
    _same_shape(predictions, targets)
    return (predictions == targets).astype(jnp.float32)


class Accuracy(Classified):
  """Weighted accuracy of `classifier(model_output)` (default `ArgMax()`) against targets.

  ```python
  tl.Accuracy().apply({}, (logits, targets, weights))
  tl.Accuracy(classifier=tl.Fn('Threshold', lambda x: (x[..., 0] > 0).astype(jnp.int32)))
  ```
  """

  def forward(self, model_output, targets, weights):
    return _weighted_mean(self.correct(model_output, targets), targets, weights)


class BinaryCrossEntropyLoss(_Metric):
  """Binary cross-entropy of *probabilities* against 0/1 targets of the same shape, as Trax's
  `BinaryCrossEntropyLoss`: `-sum(t log p + (1 - t) log(1 - p)) / batch_size`, then Trax's
  weighted mean of that scalar (so uniform weights leave it unchanged). On logits use
  `SigmoidBinaryCrossEntropyLoss`.

  ```python
  tl.BinaryCrossEntropyLoss().apply({}, (jnp.array([0.7]), jnp.array([1.0]), 1.0))   # 0.3567
  ```
  """

  n_in = 3

  def forward(self, model_output, targets, weights):
    value = probs_binary_cross_entropy(model_output, targets)
    weights = _float(weights)
    return jnp.sum(value * weights) / jnp.sum(weights)


class L2Loss(_Metric):
  """Weighted mean squared error: `sum(weights * (model_output - targets)**2) / sum(weights)`.

  ```python
  tl.L2Loss().apply({}, (predictions, targets, jnp.ones_like(targets)))
  ```
  """

  n_in = 3

  def contract(self, model_output, targets, weights):
    _same_shape(model_output, targets)
    super().contract(model_output, targets, weights)

  def forward(self, model_output, targets, weights):
    return _weighted_mean(optax.squared_error(_float(model_output), _float(targets)), targets,
                          weights)
