"""WideResnet and Resnet50: shapes, printing, BatchNorm statistics in 'batch_stats'."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax
import declax.layers as tl
from declax.models import Resnet50, WideResnet


@pytest.mark.slow
def test_wide_resnet_updates_batch_stats_in_train_mode_only():
  model = WideResnet(n_blocks=1, base_width=4, n_output_classes=10)
  images = jnp.asarray(np.random.RandomState(0).rand(4, 8, 8, 1), jnp.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)
  assert set(variables) == {"params", "batch_stats"}
  log_probs, updates = model.apply(variables, images, mutable=["batch_stats"])
  assert log_probs.shape == (4, 10)
  np.testing.assert_allclose(jnp.exp(log_probs).sum(-1), 1.0, rtol=1e-5)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), variables["batch_stats"],
                         updates["batch_stats"])
  assert all(jax.tree.leaves(changed))
  eval_model = tl.with_mode(model, "eval")
  one = eval_model.apply({**variables, **updates}, images[:1])
  np.testing.assert_allclose(one, eval_model.apply({**variables, **updates}, images)[:1],
                             atol=1e-5)  # eval mode: a row does not depend on its batch


def test_wide_resnet_structure_and_size():
  model = WideResnet(n_blocks=2, widen_factor=2, base_width=4)
  text = str(model)
  assert text.startswith("Serial[\n  ToFloat\n  Conv\n  Residual[\n    BatchNorm\n    Relu\n")
  assert text.count("Residual[") == 6
  assert text.endswith("  BatchNorm\n  Relu\n  Mean\n  Dense_10\n  LogSoftmax\n]")
  table = declax.summary(model, jnp.zeros((2, 16, 16, 3)))
  assert "Total parameters:" in table


def test_resnet50_has_the_usual_size():
  table = declax.summary(Resnet50(), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  assert table.splitlines()[-1] == "Total parameters: 25,585,641"
  small = Resnet50(d_hidden=2, n_output_classes=5)
  shapes = jax.eval_shape(lambda x: small.apply(small.init(jax.random.PRNGKey(0), x), x,
                                                mutable=["batch_stats"]),
                          jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert shapes[0].shape == (2, 5)
  assert str(small).count("Residual[") == 16
