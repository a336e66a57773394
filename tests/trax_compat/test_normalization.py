"""Trax's `trax/layers/normalization_test.py`, translated one for one.

Trax's state `(running_mean, running_var, n_batches)` is declax's `batch_stats` collection
(`mean`, `var`, `n_batches`); the TF-numpy backend cases are not applicable.
"""

import numpy as np
import pytest

import declax.layers as tl
from tests.trax_compat.trax_shim import init, init_apply, not_applicable

DTYPE_CASES = [("jax32", np.float32), ("tf32", np.float32), ("tf64", np.float64)]


def test_batch_norm_forward_shape():
  x = np.ones((30, 20, 70)).astype(np.float32)
  assert init_apply(tl.BatchNorm(), x, mutable=["batch_stats"])[0].shape == x.shape


@pytest.mark.parametrize("backend,dtype", DTYPE_CASES)
def test_batch_norm_forward_dtype(backend, dtype):
  if backend != "jax32":
    not_applicable("Trax's TF-numpy backend (declax runs on JAX only)")
  x = np.ones((3, 2, 7)).astype(dtype)
  assert init_apply(tl.BatchNorm(), x, mutable=["batch_stats"])[0].dtype == dtype


@pytest.mark.parametrize("momentum", [0.999, 0.900, 0.800])
def test_batch_norm_forward(momentum):
  layer = tl.BatchNorm(momentum=momentum)
  x = np.arange(24).reshape((2, 3, 4)).astype(np.float32)
  y, state = init_apply(layer, x, mutable=["batch_stats"])
  stats = state["batch_stats"]
  running_mean, running_var, n_batches = stats["mean"], stats["var"], stats["n_batches"]
  mean_of_x, var_of_x = 11.5, 47.9167
  np.testing.assert_allclose(running_mean, 0.0 * momentum + mean_of_x * (1.0 - momentum))
  np.testing.assert_allclose(running_var, 1.0 * momentum + var_of_x * (1.0 - momentum),
                             rtol=1e-6)
  assert n_batches == 1
  np.testing.assert_allclose(y, (x - mean_of_x) / np.sqrt(var_of_x + 1e-5), rtol=1e-6)


def test_batch_norm_new_weights_and_state():
  stats = init(tl.BatchNorm(), np.ones((3, 2, 7)).astype(np.float32))["batch_stats"]
  np.testing.assert_allclose(stats["mean"], 0.0)
  np.testing.assert_allclose(stats["var"], 1.0)
  assert stats["n_batches"] == 0


def test_layer_norm_forward_shape():
  x = np.ones((3, 2, 7)).astype(np.float32)
  assert init_apply(tl.LayerNorm(), x).shape == x.shape


@pytest.mark.parametrize("backend,dtype", DTYPE_CASES)
def test_layer_norm_forward_dtype(backend, dtype):
  if backend != "jax32":
    not_applicable("Trax's TF-numpy backend (declax runs on JAX only)")
  x = np.ones((3, 2, 7)).astype(dtype)
  assert init_apply(tl.LayerNorm(), x).dtype == dtype


@pytest.mark.parametrize("learn_epsilon", [False, True])
def test_filter_response_norm_forward_shape(learn_epsilon):
  x = np.ones((64, 5, 7, 3)).astype(np.float32)
  assert init_apply(tl.FilterResponseNorm(learn_epsilon=learn_epsilon), x).shape == x.shape
