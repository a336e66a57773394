"""Tests for declax.layers.convolution: Conv against flax.linen.Conv, pooling against flax."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import declax.layers as tl
from tests.layers.jit_variants import LayerVariantsTest

KEY = jax.random.PRNGKey(0)


def _normal(shape, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


@pytest.mark.parametrize("kwargs, shape", [
    ({"kernel_size": (3, 3)}, (2, 6, 6, 3)),
    ({"kernel_size": (3, 2), "strides": (2, 1), "padding": "SAME"}, (2, 7, 5, 3)),
    ({"kernel_size": (3, 3), "kernel_dilation": (1, 2), "padding": ((1, 1), (2, 0))},
     (1, 6, 6, 2)),
    ({"kernel_size": (3,)}, (2, 9, 3)),
    ({"kernel_size": (5,), "strides": 2, "padding": 2, "use_bias": False}, (2, 9, 4)),
])
@pytest.mark.slow
def test_conv_matches_flax(kwargs, shape):
  x = _normal(shape)
  layer = tl.Conv(4, **kwargs)
  variables = layer.init(KEY, x)
  kernel = nn.unbox(variables)["params"]["kernel"]
  assert kernel.shape == tuple(kwargs["kernel_size"]) + (shape[-1], 4)
  expected = nn.Conv(4, **{"padding": "VALID", **kwargs}).apply(nn.unbox(variables), x)
  y = layer.apply(variables, x)
  assert y.shape == expected.shape
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_conv_grads():
  x = _normal((1, 4, 4, 2))
  layer = tl.Conv(3, (2, 2))
  params = nn.unbox(layer.init(KEY, x))["params"]
  check_grads(lambda p, x: layer.apply({"params": p}, x), (params, x), order=1, modes=("rev",))


@pytest.mark.usefixtures("logical_axes")
def test_conv_param_axes_and_override():
  x = jnp.ones((1, 5, 5, 2))
  specs = nn.get_partition_spec(tl.Conv(4, (3, 3)).init(KEY, x))["params"]
  assert specs == {"kernel": P(None, None, "embed", "mlp"), "bias": P("mlp")}
  specs = nn.get_partition_spec(tl.Conv(4, (3,)).init(KEY, x[:, 0]))["params"]
  assert specs["kernel"] == P(None, "embed", "mlp")
  full = tl.Conv(4, (3, 3), kernel_axes=("a", "b", "embed", None)).init(KEY, x)
  assert nn.get_partition_spec(full)["params"]["kernel"] == P("a", "b", "embed", None)
  plain = tl.Conv(4, (3, 3), kernel_axes=None, bias_axes=None).init(KEY, x)["params"]
  assert all(isinstance(v, jax.Array) for v in plain.values())


def test_conv_mixed_precision():
  x = _normal((1, 5, 5, 2))
  variables = tl.Conv(4, (3, 3), dtype=jnp.bfloat16).init(KEY, x)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nn.unbox(variables)))
  y = tl.Conv(4, (3, 3), dtype=jnp.bfloat16).apply(variables, x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(jnp.float32), tl.Conv(4, (3, 3)).apply(variables, x),
                             atol=5e-2)


@pytest.mark.parametrize("jit", [False, True])
def test_conv_channel_mismatch_is_layer_error(jit):
  model = tl.Serial(tl.Conv(4, (3, 3)), tl.Relu())
  variables = model.init(KEY, jnp.ones((1, 5, 5, 3)))
  apply = jax.jit(model.apply) if jit else model.apply
  with pytest.raises(tl.LayerError) as info:
    apply(variables, jnp.ones((1, 5, 5, 2)))
  message = str(info.value)
  assert message.startswith("Serial[0] > Conv: ValueError")
  assert "f32[1,5,5,2]" in message and "(3, 3, 3, 4)" in message


def test_conv_wrong_rank_is_layer_error():
  with pytest.raises(tl.LayerError) as info:
    tl.Conv(4, (3, 3)).init(KEY, jnp.ones((5, 5, 3)))
  message = str(info.value)
  assert "rank 4 (batch, height, width, channels)" in message and "f32[5,5,3]" in message
  with pytest.raises(tl.LayerError, match=r"rank 3 \(batch, length, channels\).*f32\[4,3\]"):
    tl.Conv(4, (3,)).init(KEY, jnp.ones((4, 3)))
  # Extra leading axes are folded into the batch, as in Trax: (2, 4) batches of length 4.
  assert tl.Conv(4, (3,)).init_with_output(KEY, jnp.ones((2, 4, 4, 3)))[0].shape == (2, 4, 2, 4)


def test_conv_construction_errors_and_printing():
  with pytest.raises(TypeError, match="kernel_size must be a tuple"):
    tl.Conv(4, 3)
  with pytest.raises(ValueError, match=r"strides=\(1, 1, 1\) has 3 entries for 2"):
    tl.Conv(4, (3, 3), strides=(1, 1, 1))
  assert tl.Conv(4, [3, 3]).kernel_size == (3, 3)
  assert str(tl.Conv(4, (3, 3))) == "Conv"
  assert str(tl.Serial(tl.Conv(4, (3, 3)), tl.MaxPool())) == "Serial[\n  Conv\n  MaxPool\n]"


@pytest.mark.parametrize("kwargs", [
    {},
    {"pool_size": (2, 2), "strides": (2, 2)},
    {"pool_size": (3, 3), "strides": (2, 2), "padding": "SAME"},
    {"pool_size": (2, 3), "padding": ((1, 0), (0, 1))},
])
def test_pools_match_flax(kwargs):
  x = _normal((2, 7, 6, 3))
  window = {"window_shape": kwargs.get("pool_size", (2, 2)), "strides": kwargs.get("strides"),
            "padding": kwargs.get("padding", "VALID")}
  np.testing.assert_array_equal(tl.MaxPool(**kwargs).apply({}, x), nn.max_pool(x, **window))
  np.testing.assert_allclose(tl.AvgPool(**kwargs).apply({}, x),
                             nn.avg_pool(x, count_include_pad=False, **window), rtol=1e-6)
  np.testing.assert_allclose(tl.SumPool(**kwargs).apply({}, x),
                             nn.pool(x, 0.0, jax.lax.add, **window), rtol=1e-6)


def test_pool_defaults_follow_trax():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  assert tl.MaxPool().apply({}, x).shape == (1, 3, 3, 1)  # strides=None: stride 1, as in Trax
  np.testing.assert_array_equal(tl.MaxPool(strides=(2, 2)).apply({}, x)[0, :, :, 0],
                                [[5, 7], [13, 15]])
  ones = jnp.ones((1, 3, 3, 1))
  # 'SAME' averages ignore the padding (Trax); count_include_pad=True counts it (Flax's default).
  np.testing.assert_allclose(tl.AvgPool(padding="SAME").apply({}, ones), 1.0)
  assert tl.AvgPool(padding="SAME", count_include_pad=True).apply({}, ones)[0, -1, -1, 0] < 1
  assert tl.MaxPool((3,)).apply({}, jnp.ones((2, 5, 4))).shape == (2, 3, 4)  # 1-D pooling


def test_pool_errors():
  with pytest.raises(tl.LayerError,
                     match=r"MaxPool: ValueError: \[Chex\] Assertion assert_rank.*"
                     r"\[expects inputs of rank 4.*f32\[4,4\]\]"):
    tl.MaxPool().apply({}, jnp.ones((4, 4)))
  with pytest.raises(TypeError, match="pool_size"):
    tl.AvgPool(pool_size=2)


class ConvolutionVariantsTest(LayerVariantsTest):
  """Convolution and pooling layers give the same results with and without jit."""

  __test__ = True
  _x = jax.random.normal(jax.random.PRNGKey(3), (1, 4, 4, 3))
  CASES = (
      (tl.Conv(5, (3, 3), padding="SAME"), _x, None),
      (tl.MaxPool(strides=(2, 2)), _x, lambda x: x.reshape(1, 2, 2, 2, 2, 3).max((2, 4))),
      (tl.AvgPool(strides=(2, 2)), _x, lambda x: x.reshape(1, 2, 2, 2, 2, 3).mean((2, 4))),
  )
  BAD = ((tl.Conv(5, (3, 3)), _x, jnp.ones((4, 4, 3))), (tl.Conv(5, (3, 3)), _x, _x[..., :2]),
         (tl.MaxPool(), _x, jnp.ones((4, 4))))
