"""Trax's `trax/layers/metrics_test.py`, translated one for one (same names and assertions)."""

import numpy as np

import declax.layers as tl


def run(layer, *xs):
  return layer.apply({}, xs)


def almost(value, expected, places=7):  # unittest's assertAlmostEqual
  assert round(float(value) - expected, places) == 0, (float(value), expected)


TARGETS3 = np.array([0, 1, 2])
RIGHT = np.array([[0.7, 0.2, 0.1, 0.0], [0.2, 0.7, 0.1, 0.0], [0.2, 0.1, 0.7, 0.0]])
ALL_2 = np.array([[0.2, 0.1, 0.7, 0.0]] * 3)
ALL_1 = np.array([[0.2, 0.7, 0.1, 0.0]] * 3)
ALL_0 = np.array([[0.7, 0.2, 0.1, 0.0]] * 3)
T2 = np.array([0, 1])
NEAR = np.array([[9.0, 2.0, 0.0, -2.0], [2.0, 9.0, 0.0, -2.0]])
MORE = np.array([[2.2, 2.0, 0.0, -2.0], [2.0, 2.2, 0.0, -2.0]])
MIXED = np.array([[9.0, 2.0, 0.0, -2.0], [2.0, 2.2, 0.0, -2.0]])


def test_category_accuracy():
  layer = tl.CategoryAccuracy()
  assert run(layer, RIGHT, TARGETS3) == 1.0
  assert run(layer, ALL_2, TARGETS3) == np.float32(1 / 3)


def test_weighted_category_accuracy_even_weights():
  layer, weights = tl.WeightedCategoryAccuracy(), np.array([1.0, 1.0, 1.0])
  assert run(layer, RIGHT, TARGETS3, weights) == 1.0
  assert run(layer, ALL_2, TARGETS3, weights) == np.float32(1 / 3)


def test_weighted_category_accuracy_uneven_weights():
  layer, weights = tl.WeightedCategoryAccuracy(), np.array([1.0, 5.0, 2.0])
  assert run(layer, RIGHT, TARGETS3, weights) == 1.0
  assert run(layer, ALL_1, TARGETS3, weights) == 0.625


def test_category_cross_entropy():
  layer = tl.CategoryCrossEntropy()
  almost(run(layer, NEAR, T2), 0.001, places=3)
  almost(run(layer, MORE, T2), 0.665, places=3)
  almost(run(layer, MIXED, T2), 0.333, places=3)


def test_category_cross_entropy_with_label_smoothing():
  layer = tl.CategoryCrossEntropy(label_smoothing=0.01)
  almost(run(layer, NEAR, T2), 0.069, places=3)
  almost(run(layer, MORE, T2), 0.682, places=3)
  almost(run(layer, MIXED, T2), 0.375, places=3)


def test_weighted_category_cross_entropy():
  layer, weights = tl.WeightedCategoryCrossEntropy(), np.array([30, 10])
  almost(run(layer, NEAR, T2, weights), 0.001, places=3)
  almost(run(layer, MORE, T2, weights), 0.665, places=3)
  almost(run(layer, MIXED, T2, weights), 0.167, places=3)


def test_weighted_category_cross_entropy_with_label_smoothing():
  layer, weights = tl.WeightedCategoryCrossEntropy(label_smoothing=0.01), np.array([30, 10])
  almost(run(layer, NEAR, T2, weights), 0.069, places=3)
  almost(run(layer, MORE, T2, weights), 0.682, places=3)
  almost(run(layer, MIXED, T2, weights), 0.222, places=3)


SEQ_TARGETS = np.array([[0, 1, 0, 0], [1, 0, 1, 0]])
SEQ_WEIGHTS = np.array([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
SEQ_RIGHT = np.array([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.35, 0.65]],
                      [[0.3, 0.7], [0.8, 0.2], [0.1, 0.9], [0.35, 0.65]]])
SEQ_FIRST_WRONG = np.array([[[0.45, 0.55], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]],
                            [[0.3, 0.7], [0.8, 0.2], [0.1, 0.9], [0.6, 0.4]]])
SEQ_THIRD_WRONG = np.array([[[0.9, 0.1], [0.2, 0.8], [0.48, 0.52], [0.6, 0.4]],
                            [[0.3, 0.7], [0.8, 0.2], [0.51, 0.49], [0.6, 0.4]]])


def test_masked_sequence_accuracy():
  layer = tl.MaskedSequenceAccuracy()
  assert run(layer, SEQ_RIGHT, SEQ_TARGETS, SEQ_WEIGHTS) == 1.0
  assert run(layer, SEQ_FIRST_WRONG, SEQ_TARGETS, SEQ_WEIGHTS) == 0.5
  assert run(layer, SEQ_THIRD_WRONG, SEQ_TARGETS, SEQ_WEIGHTS) == 0.0


def test_binary_cross_entropy():
  layer, targets = tl.BinaryCrossEntropy(), np.array([1, 1, 0, 0, 0])
  almost(run(layer, np.array([9.0, 9.0, -9.0, -9.0, -9.0]), targets), 0.000123, places=6)
  almost(run(layer, np.array([1.0, 1.0, -1.0, -1.0, -1.0]), targets), 0.313, places=3)
  almost(run(layer, np.array([9.0, 1.0, -1.0, -1.0, -9.0]), targets), 0.188, places=3)
  almost(run(layer, np.array([-1.0, -1.0, 1.0, 1.0, 1.0]), targets), 1.313, places=3)


def test_accuracy_even_weights():
  layer, weights = tl.Accuracy(), np.array([1.0, 1.0, 1.0])
  assert run(layer, RIGHT, TARGETS3, weights) == 1.0
  assert run(layer, ALL_2, TARGETS3, weights) == np.float32(1 / 3)


def test_accuracy_uneven_weights():
  layer, weights = tl.Accuracy(), np.array([1.0, 5.0, 2.0])
  assert run(layer, RIGHT, TARGETS3, weights) == 1.0
  assert run(layer, ALL_1, TARGETS3, weights) == 0.625
  assert run(layer, ALL_0, TARGETS3, weights) == 0.125


def test_accuracy_binary_classifier():
  layer = tl.Accuracy(classifier=tl.ThresholdToBinary())
  targets = np.array([[0, 0, 1, 1], [1, 1, 1, 0]])
  weights = np.ones_like(targets)
  outputs = np.array([[0.499, 0.500, 0.501, 0.502], [0.503, 0.502, 0.501, 0.500]])
  assert run(layer, outputs, targets, weights) == 1.0
  outputs = np.array([[0.498, 0.499, 0.500, 0.501], [0.502, 0.501, 0.500, 0.499]])
  assert run(layer, outputs, targets, weights) == 0.75


def test_sequence_accuracy_weights_all_ones():
  layer = tl.SequenceAccuracy()
  targets = np.array([[0, 1, 0, 1], [1, 0, 1, 1]])
  weights = np.ones_like(targets)
  outputs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]],
                      [[0.3, 0.7], [0.8, 0.2], [0.1, 0.9], [0.4, 0.6]]])
  assert run(layer, outputs, targets, weights) == 1.0
  outputs = np.array([[[0.45, 0.55], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]],
                      [[0.3, 0.7], [0.8, 0.2], [0.1, 0.9], [0.4, 0.6]]])
  assert run(layer, outputs, targets, weights) == 0.5
  outputs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.55, 0.45]],
                      [[0.3, 0.7], [0.8, 0.2], [0.1, 0.9], [0.52, 0.48]]])
  assert run(layer, outputs, targets, weights) == 0.0


def test_sequence_accuracy_last_position_zero_weight():
  layer = tl.SequenceAccuracy()
  assert run(layer, SEQ_RIGHT, SEQ_TARGETS, SEQ_WEIGHTS) == 1.0
  assert run(layer, SEQ_FIRST_WRONG, SEQ_TARGETS, SEQ_WEIGHTS) == 0.5
  assert run(layer, SEQ_THIRD_WRONG, SEQ_TARGETS, SEQ_WEIGHTS) == 0.0


def test_binary_cross_entropy_loss():
  y = run(tl.BinaryCrossEntropyLoss(), np.ones((9, 1)), np.ones((9, 1)), np.ones((9, 1)))
  assert y.shape == ()


def test_cross_entropy_loss():
  y = run(tl.CrossEntropyLoss(), np.ones((9, 4, 4, 20)), np.ones((9, 4, 4)), np.ones((9, 4, 4)))
  assert y.shape == ()


def test_l2_loss():
  layer = tl.L2Loss()
  outputs, targets = np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 0.0]])
  np.testing.assert_allclose(run(layer, outputs, targets, np.array([[1.0, 1.0], [1.0, 0.0]])), 0.0)
  np.testing.assert_allclose(run(layer, outputs, targets, np.array([[1.0, 0.0], [0.0, 1.0]])), 0.5)


def test_smooth_l1_loss():
  layer = tl.SmoothL1Loss()
  outputs, targets = np.array([[1.0, 1.0], [1.0, 2.0]]), np.array([[1.0, 1.0], [1.0, 0.0]])
  l1_dist = 2
  np.testing.assert_allclose(run(layer, outputs, targets, np.array([[1.0, 1.0], [1.0, 0.0]])), 0.0)
  weights, sum_weights = np.array([[1.0, 0.0], [0.0, 1.0]]), 2
  np.testing.assert_allclose(run(layer, outputs, targets, weights), (l1_dist - 0.5) / sum_weights)
  outputs, targets = np.array([[1.0, 1.0], [1.0, 1.5]]), np.array([[1.0, 1.0], [1.0, 1.0]])
  l1_dist = 0.5
  np.testing.assert_allclose(run(layer, outputs, targets, weights),
                             0.5 * l1_dist**2 / sum_weights)


F_OUTPUTS = np.array([[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0]])
F_TARGETS = np.array([1, 2, 2, 3, 1])


def test_macro_averaged_f_score():
  almost(run(tl.MacroAveragedFScore(), F_OUTPUTS, F_TARGETS), 0.333, places=3)
  almost(run(tl.MacroAveragedFScore(initial_category_index=1), F_OUTPUTS, F_TARGETS), 0.444,
         places=3)


def test_weighted_f_score():
  almost(run(tl.WeightedFScore(), F_OUTPUTS, F_TARGETS), 0.533, places=3)
  almost(run(tl.WeightedFScore(initial_category_index=1), F_OUTPUTS, F_TARGETS), 0.533, places=3)


def test_names():
  assert str(tl.L2Loss()) == "L2Loss_in3"
  assert str(tl.Accuracy()) == "Accuracy_in3"
  assert str(tl.SequenceAccuracy()) == "SequenceAccuracy_in3"
  assert str(tl.BinaryCrossEntropyLoss()) == "BinaryCrossEntropyLoss_in3"
  assert str(tl.CrossEntropyLoss()) == "CrossEntropyLoss_in3"
  assert str(tl.BinaryCrossEntropySum()) == "BinaryCrossEntropySum_in3"
  assert str(tl.CrossEntropySum()) == "CrossEntropySum_in3"
