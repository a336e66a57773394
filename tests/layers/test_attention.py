"""Tests of declax.layers.attention: numerics against flax.linen / a hand-written reference,
masking, causality, the predict-mode KV cache, dropout, parameters, printing and errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import declax.layers as tl
from declax import sharding
from declax.layers import attention
from tests.layers.jit_variants import LayerVariantsTest

D, HEADS, B, T = 8, 2, 2, 7
KEY = jax.random.PRNGKey(0)


def _x(shape=(B, T, D), seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def _flax_params(params):
  """declax attention params -> flax.linen.MultiHeadDotProductAttention params (same layout)."""
  params = nn.unbox(params)
  return {name: {"kernel": params[f"{name}_kernel"], "bias": params[f"{name}_bias"]}
          for name in ("query", "key", "value", "out")}


def _flax_mha(params, q, kv, mask):
  mha = nn.MultiHeadDotProductAttention(num_heads=HEADS, qkv_features=D, out_features=D)
  return mha.apply({"params": _flax_params(params)}, q, kv, kv, mask=mask)


def _reference(params, q_in, kv_in, mask=None):
  """softmax(Q K^T / sqrt(d_head)) V written out in numpy (float64)."""
  p = {k: np.asarray(v, np.float64) for k, v in nn.unbox(params).items()}
  q = np.einsum("btd,dnh->bnth", q_in, p["query_kernel"]) + p["query_bias"].reshape(1, HEADS, 1, -1)
  k = np.einsum("btd,dnh->bnth", kv_in, p["key_kernel"]) + p["key_bias"].reshape(1, HEADS, 1, -1)
  v = np.einsum("btd,dnh->bnth", kv_in, p["value_kernel"]) + p["value_bias"].reshape(
      1, HEADS, 1, -1)
  logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(D // HEADS)
  if mask is not None:
    logits = np.where(mask, logits, -1e30)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  y = weights @ v  # (b, n, t, h)
  return np.einsum("bnth,nhd->btd", y, p["out_kernel"]) + p["out_bias"]


# ------------------------------------------------------------------------------------------------
# Numerics
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_causal_attention_matches_flax_and_reference():
  layer = tl.CausalAttention(D, n_heads=HEADS)
  x = _x()
  variables = layer.init(KEY, x)
  y = layer.apply(variables, x)
  causal = np.tril(np.ones((T, T), bool))[None, None]
  np.testing.assert_allclose(y, _flax_mha(variables["params"], x, x, nn.make_causal_mask(
      jnp.ones((B, T)))), atol=1e-5)
  np.testing.assert_allclose(y, _reference(variables["params"], x, x, causal), atol=1e-5)
  np.testing.assert_allclose(jax.jit(layer.apply)(variables, x), y, atol=1e-6)


def test_attention_with_padding_mask_matches_flax():
  layer = tl.Attention(D, n_heads=HEADS)
  tokens = jnp.array([[3, 4, 5, 6, 7, 0, 0], [1, 2, 0, 0, 0, 0, 0]])
  mask = tl.PaddingMask().apply({}, tokens)
  x = _x()
  variables = layer.init(KEY, (x, mask))
  y, mask_out = layer.apply(variables, (x, mask))
  assert mask_out is mask
  np.testing.assert_allclose(y, _flax_mha(variables["params"], x, x, mask), atol=1e-5)
  np.testing.assert_allclose(y, _reference(variables["params"], x, x, np.asarray(mask)),
                             atol=1e-5)
  # A 0/1 float mask means the same as a boolean one.
  y_float, _ = layer.apply(variables, (x, mask.astype(jnp.float32)))
  np.testing.assert_allclose(y_float, y, atol=1e-6)


def test_attention_qkv_cross_attention_matches_flax():
  layer = tl.AttentionQKV(D, n_heads=HEADS)
  queries, memory = _x((B, 3, D), seed=2), _x((B, 5, D), seed=3)
  mask = tl.PaddingMask().apply({}, jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
  variables = layer.init(KEY, (queries, memory, memory, mask))
  y, mask_out = layer.apply(variables, (queries, memory, memory, mask))
  assert y.shape == (B, 3, D) and mask_out is mask
  np.testing.assert_allclose(y, _flax_mha(variables["params"], queries, memory, mask), atol=1e-5)
  # Predict mode has no cache for cross-attention: it computes what eval computes.
  predict = tl.AttentionQKV(D, n_heads=HEADS, mode="predict")
  np.testing.assert_allclose(predict.apply(variables, (queries, memory, memory, mask))[0], y,
                             atol=1e-6)


def test_padded_keys_are_ignored():
  layer = tl.Attention(D, n_heads=HEADS)
  mask = tl.PaddingMask().apply({}, jnp.array([[1, 1, 1, 1, 0, 0, 0]] * B))
  x = _x()
  variables = layer.init(KEY, (x, mask))
  y, _ = layer.apply(variables, (x, mask))
  x_changed = x.at[:, 4:].set(100.0 * _x(seed=9)[:, 4:])
  y_changed, _ = layer.apply(variables, (x_changed, mask))
  np.testing.assert_allclose(y_changed[:, :4], y[:, :4], atol=1e-5)
  # Without the mask the padded positions matter.
  ones = jnp.ones_like(mask)
  assert not np.allclose(layer.apply(variables, (x_changed, ones))[0][:, :4],
                         layer.apply(variables, (x, ones))[0][:, :4], atol=1e-3)


def test_causality_future_tokens_do_not_change_the_past():
  layer = tl.CausalAttention(D, n_heads=HEADS)
  x = _x()
  variables = layer.init(KEY, x)
  y = layer.apply(variables, x)
  y_changed = layer.apply(variables, x.at[:, 4:].add(10.0))
  np.testing.assert_allclose(y_changed[:, :4], y[:, :4], atol=1e-6)
  assert not np.allclose(y_changed[:, 4:], y[:, 4:], atol=1e-3)


def test_gradients_of_causal_attention():
  layer = tl.CausalAttention(4, n_heads=2)
  x = _x((1, 3, 4))
  params = layer.init(KEY, x)["params"]
  apply = jax.jit(lambda p, x: layer.apply({"params": p}, x))
  check_grads(apply, (params, x), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_bfloat16_compute_with_float32_params():
  layer = tl.CausalAttention(D, n_heads=HEADS, dtype=jnp.bfloat16)
  x = _x()
  variables = layer.init(KEY, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nn.unbox(variables)))
  y = layer.apply(variables, x)
  assert y.dtype == jnp.bfloat16
  y32 = tl.CausalAttention(D, n_heads=HEADS).apply(variables, x)
  np.testing.assert_allclose(y.astype(jnp.float32), y32, atol=5e-2)


# ------------------------------------------------------------------------------------------------
# Predict mode (KV cache)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init_length", [1, T])
def test_predict_token_by_token_equals_full_pass(init_length):
  x = _x()
  full = tl.CausalAttention(D, n_heads=HEADS)
  params = full.init(KEY, x)["params"]
  expected = full.apply({"params": params}, x)

  layer = tl.CausalAttention(D, n_heads=HEADS, max_inference_length=10, mode="predict")
  variables = layer.init(KEY, x[:, :init_length])
  cache = variables["cache"]
  assert cache["cached_key"].shape == (B, 10, HEADS, D // HEADS)
  assert cache["cached_value"].shape == (B, 10, HEADS, D // HEADS)
  assert int(cache["cache_index"]) == 0 and not np.any(cache["cached_key"])
  # The parameter tree does not depend on the mode.
  assert jax.tree.structure(variables["params"]) == jax.tree.structure(params)

  step = jax.jit(lambda v, x_t: layer.apply(v, x_t, mutable=["cache"]))
  outputs = []
  for t in range(T):
    y_t, state = step({"params": params, "cache": cache}, x[:, t : t + 1])
    cache = state["cache"]
    outputs.append(y_t)
  assert int(cache["cache_index"]) == T
  np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), expected, atol=1e-5)


def test_predict_prefill_then_steps_equals_full_pass():
  x = _x()
  full = tl.CausalAttention(D, n_heads=HEADS)
  params = full.init(KEY, x)["params"]
  layer = tl.with_mode(tl.CausalAttention(D, n_heads=HEADS, max_inference_length=T), "predict")
  cache = layer.init(KEY, x[:, :1])["cache"]
  y_prefix, state = layer.apply({"params": params, "cache": cache}, x[:, :4], mutable=["cache"])
  y_rest, state = layer.apply({"params": params, **state}, x[:, 4:], mutable=["cache"])
  np.testing.assert_allclose(jnp.concatenate([y_prefix, y_rest], axis=1),
                             full.apply({"params": params}, x), atol=1e-5)
  assert int(state["cache"]["cache_index"]) == T


def test_predict_errors():
  layer = tl.CausalAttention(D, n_heads=HEADS, max_inference_length=4, mode="predict")
  variables = layer.init(KEY, _x((B, 1, D)))
  with pytest.raises(tl.LayerError, match="do not fit in the cache"):
    layer.apply(variables, _x((B, 5, D)), mutable=["cache"])
  with pytest.raises(tl.LayerError, match=r"another batch size") as info:
    layer.apply(variables, _x((3, 1, D)), mutable=["cache"])
  assert "(3, 4, 2, 4)" in str(info.value) and "(2, 4, 2, 4)" in str(info.value)


# ------------------------------------------------------------------------------------------------
# Dropout
# ------------------------------------------------------------------------------------------------


def test_dropout_on_attention_weights_in_train_mode_only():
  x = _x()
  train = tl.CausalAttention(D, n_heads=HEADS, dropout=0.5)
  variables = train.init(KEY, x)
  eval_y = tl.with_mode(train, "eval").apply(variables, x)
  np.testing.assert_allclose(eval_y, tl.CausalAttention(D, n_heads=HEADS).apply(variables, x),
                             atol=1e-6)
  y1 = train.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(1)})
  y1_again = train.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(1)})
  y2 = train.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(2)})
  np.testing.assert_array_equal(y1, y1_again)
  assert not np.allclose(y1, eval_y, atol=1e-3) and not np.allclose(y1, y2, atol=1e-3)


@pytest.mark.slow
def test_explicit_dropout_path_matches_hand_written_reference():
  q, k, v = (_x((B, 5, HEADS, 4), seed=s) for s in (1, 2, 3))
  mask = jnp.array([True, True, True, False, True])[None, None, None, :]
  rng, rate = jax.random.PRNGKey(7), 0.3
  y = attention.dot_product_attention(q, k, v, mask=mask, is_causal=True, dropout_rate=rate,
                                      dropout_rng=rng)
  logits = jnp.einsum("btnh,bsnh->bnts", q, k) / 2.0
  allowed = mask & jnp.tril(jnp.ones((5, 5), bool))[None, None]
  weights = jax.nn.softmax(jnp.where(allowed, logits, -1e30), axis=-1)
  kept = jax.random.bernoulli(rng, 1 - rate, weights.shape)
  expected = jnp.einsum("bnts,bsnh->btnh", jnp.where(kept, weights / (1 - rate), 0.0), v)
  np.testing.assert_allclose(y, expected, atol=1e-5)
  # Rate 0 is the fused path.
  np.testing.assert_allclose(
      attention.dot_product_attention(q, k, v, mask=mask, is_causal=True, dropout_rate=0.0),
      jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Parameters, printing, PaddingMask
# ------------------------------------------------------------------------------------------------


def test_parameter_shapes_and_logical_axes():
  with nn.logical_axis_rules(sharding.rules_from_config()):  # names are kept only under rules
    variables = tl.CausalAttention(D, n_heads=HEADS).init(KEY, _x())
  got = {name: (p.value.shape, p.names) for name, p in variables["params"].items()}
  qkv = ((D, HEADS, D // HEADS), ("embed", "heads", "kv"))
  qkv_bias = ((HEADS, D // HEADS), ("heads", "kv"))
  assert got == {
      "query_kernel": qkv, "key_kernel": qkv, "value_kernel": qkv,
      "query_bias": qkv_bias, "key_bias": qkv_bias, "value_bias": qkv_bias,
      "out_kernel": ((HEADS, D // HEADS, D), ("heads", "kv", "embed")),
      "out_bias": ((D,), ("embed",)),
  }
  no_bias = tl.Attention(D, n_heads=HEADS, use_bias=False, qkv_kernel_axes=None)
  params = no_bias.init(KEY, (_x(), jnp.ones((B, 1, 1, T), bool)))["params"]
  assert sorted(params) == ["key_kernel", "out_kernel", "query_kernel", "value_kernel"]
  assert isinstance(params["query_kernel"], jax.Array)  # axes=None: a plain parameter


def test_printing():
  assert str(tl.CausalAttention(D)) == "CausalAttention"
  assert str(tl.Attention(D)) == "Attention_in2_out2"
  assert str(tl.AttentionQKV(D)) == "AttentionQKV_in4_out2"
  assert str(tl.PaddingMask()) == "PaddingMask(0)"
  model = tl.Serial(tl.Branch([], tl.PaddingMask(pad=1)), tl.Attention(D), tl.Select([0], n_in=2))
  assert str(model) == ("Serial[\n  Branch_out2[\n    Serial\n    PaddingMask(1)\n  ]\n"
                        "  Attention_in2_out2\n  Select[0]_in2\n]")


def test_padding_mask():
  mask = tl.PaddingMask().apply({}, jnp.array([[5, 3, 0], [0, 1, 2]]))
  assert mask.shape == (2, 1, 1, 3) and mask.dtype == jnp.bool_
  np.testing.assert_array_equal(mask[:, 0, 0], [[True, True, False], [False, True, True]])
  with pytest.raises(tl.LayerError, match=r"PaddingMask\(0\).*rank 3") as info:
    tl.PaddingMask().apply({}, jnp.ones((2, 3, 4), jnp.int32))
  assert "i32[2,3,4]" in str(info.value)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_wrong_feature_dim_or_rank_raises_layer_error_with_shapes():
  layer = tl.CausalAttention(D, n_heads=HEADS)
  model = tl.Serial(tl.Fn("Id", lambda x: x), layer)
  with pytest.raises(tl.LayerError) as info:
    model.init(KEY, _x((B, T, 6)))
  message = str(info.value)
  assert message.startswith("Serial[1] > CausalAttention: AssertionError")
  assert "(2, 7, 6)" in message and "d_feature=8" in message and "f32[2,7,6]" in message
  with pytest.raises(tl.LayerError, match=r"CausalAttention.*\(2, 8\)"):
    layer.init(KEY, jnp.ones((2, D)))
  with pytest.raises(tl.LayerError, match=r"Attention: .*mask must be 4-d"):
    tl.Attention(D).init(KEY, (_x(), jnp.ones((B, T))))
  with pytest.raises(tl.LayerError, match="keys and values"):
    tl.AttentionQKV(D).init(KEY, (_x(), _x(), _x((B, 5, D)), jnp.ones((B, 1, 1, T))))
  with pytest.raises(tl.LayerError, match="got 1 input"):
    tl.Attention(D).init(KEY, _x())


def test_construction_errors():
  with pytest.raises(ValueError, match="d_feature=10 is not divisible by n_heads=4"):
    tl.CausalAttention(10, n_heads=4)
  with pytest.raises(ValueError, match="dropout"):
    tl.Attention(D, dropout=1.0)
  with pytest.raises(ValueError, match="mode"):
    tl.CausalAttention(D, mode="decode")


class AttentionVariantsTest(LayerVariantsTest):
  """Attention layers give the same results with and without jit."""

  __test__ = True
  _x = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 8))
  _mask = jnp.ones((2, 1, 1, 5), bool)
  CASES = (
      (tl.CausalAttention(8, n_heads=2), _x, None),
      (tl.Attention(8, n_heads=2), (_x, _mask), None),
      (tl.PaddingMask(), jnp.array([[5, 3, 0]]), lambda x: (x != 0)[:, None, None, :]),
  )
  BAD = (
      (tl.CausalAttention(8, n_heads=2), _x, jnp.ones((2, 5, 6))),
      (tl.Attention(8, n_heads=2), (_x, _mask), (_x, jnp.ones((2, 5), bool))),
  )
