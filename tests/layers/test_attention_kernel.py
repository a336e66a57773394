"""Numerics of declax's own attention formulation (`declax.layers.attention_kernel`), the
performance change measured by `benchmarks/mfu.py --compare-attention`: causal attention split
into blocks of queries that skip masked keys, and a hand-written backward pass.

Values and gradients must match `jax.nn.dot_product_attention` on the lengths that use blocks
(>= 256), with and without padding masks, in float32 and bfloat16.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import declax.layers as tl
from declax.layers import attention, attention_kernel


def _qkv(length, dtype=jnp.float32, seed=0, batch=2, heads=2, d_head=8):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  return tuple(jax.random.normal(k, (batch, length, heads, d_head), jnp.float32).astype(dtype)
               for k in keys)


def _value_and_grads(fn, q, k, v):
  cotangent = jax.random.normal(jax.random.PRNGKey(9), q.shape, jnp.float32)

  def loss(q, k, v):
    return jnp.sum(fn(q, k, v).astype(jnp.float32) * cotangent)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)


@pytest.mark.parametrize("length, padded, causal", [
    (256, False, True), (512, True, True), (384, True, True), (64, True, False), (300, True, True),
])
@pytest.mark.slow
def test_matches_jax_attention_values_and_gradients(length, padded, causal):
  q, k, v = _qkv(length, seed=length)
  mask = None
  if padded:
    mask = jax.random.uniform(jax.random.PRNGKey(3), (2, 1, 1, length)) > 0.2
  ours = _value_and_grads(
      lambda q, k, v: attention.dot_product_attention(q, k, v, mask=mask, is_causal=causal),
      q, k, v)
  ref = _value_and_grads(
      lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal),
      q, k, v)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_left_padding_fully_masked_queries_match_jax():
  # The first 3 positions see only padding: JAX attends to every key uniformly there, and the
  # gradients through their masked logits are zero.
  q, k, v = _qkv(256, seed=5)
  mask = (jnp.arange(256) >= 3)[None, None, None, :]
  ours = _value_and_grads(
      lambda q, k, v: attention.dot_product_attention(q, k, v, mask=mask, is_causal=True), q, k, v)
  ref = _value_and_grads(
      lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True), q, k, v)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.slow
def test_bfloat16_close_to_float32():
  q, k, v = _qkv(512)
  f = lambda q, k, v: attention.dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
  low = f(*(x.astype(jnp.bfloat16) for x in (q, k, v)))
  assert low.dtype == jnp.bfloat16
  np.testing.assert_allclose(low.astype(jnp.float32), f(q, k, v), atol=5e-2)


def test_check_grads_blocked_causal():
  q, k, v = _qkv(256, batch=1, d_head=4)
  check_grads(lambda q, k, v: attention.dot_product_attention(q, k, v, is_causal=True),
              (q, k, v), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)


def test_query_blocks():
  assert attention_kernel._query_blocks(256, 256, True) == ((0, 128, 128), (128, 256, 256))
  assert attention_kernel._query_blocks(1024, 1024, True) == tuple(
      (s, s + 256, s + 256) for s in range(0, 1024, 256))
  assert attention_kernel._query_blocks(128, 128, True) == ((0, 128, 128),)   # too short to split
  assert attention_kernel._query_blocks(300, 300, True) == ((0, 300, 300),)   # not divisible
  assert attention_kernel._query_blocks(256, 256, False) == ((0, 256, 256),)  # not causal


@pytest.mark.slow
def test_implementation_xla_uses_jax_and_agrees():
  layer = tl.CausalAttention(16, n_heads=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 256, 16))
  variables = layer.init(jax.random.PRNGKey(1), x)
  ours = layer.apply(variables, x)
  via_jax = layer.clone(implementation="xla").apply(variables, x)
  np.testing.assert_allclose(ours, via_jax, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Which attention computation runs: select_attention_implementation (pure, any fake platform)
# ------------------------------------------------------------------------------------------------

select = attention_kernel.select_attention_implementation


@pytest.mark.parametrize("kwargs, implementation, reason", [
    (dict(platform="gpu", dtype="bfloat16", head_dim=64, is_causal=True), "cudnn",
     "GPU, bfloat16, causal"),
    (dict(platform="cuda", dtype=jnp.float16, head_dim=128, has_mask=True, q_len=64, kv_len=64),
     "cudnn", "GPU, float16, padding mask"),
    (dict(platform="gpu", dtype="bfloat16", head_dim=64, is_causal=True, has_mask=True,
          q_len=8, kv_len=8, compute_capability="9.0"), "cudnn",
     "GPU, bfloat16, causal + padding mask"),
    (dict(platform="gpu", dtype="float32", head_dim=64), "xla", "bfloat16 or float16"),
    (dict(platform="gpu", dtype="bfloat16", head_dim=64, dropout=0.1), "xla", "dropout 0.1"),
    (dict(platform="gpu", dtype="bfloat16", head_dim=12), "xla", "head size 12"),
    (dict(platform="gpu", dtype="bfloat16", head_dim=192), "xla", "up to 128"),
    (dict(platform="gpu", dtype="bfloat16", head_dim=192, compute_capability="9.0"), "cudnn",
     "GPU, bfloat16, no mask"),
    (dict(platform="gpu", dtype="bfloat16", head_dim=64, compute_capability="7.5"), "xla",
     "7.5 < 8.0"),
    (dict(platform="gpu", dtype="bfloat16", head_dim=64, has_mask=True, q_len=7, kv_len=7),
     "xla", "odd lengths"),
    (dict(platform="rocm", dtype="bfloat16", head_dim=64), "xla", "ROCm GPU"),
    (dict(platform="tpu", dtype="bfloat16", head_dim=128, is_causal=True), "xla", "TPU"),
    (dict(platform="cpu", dtype="float32", head_dim=8, is_causal=True), "cpu", "CPU"),
    (dict(platform="cpu", dtype="float32", head_dim=8, dropout=0.5), "xla", "explicit softmax"),
])
def test_select_attention_implementation(kwargs, implementation, reason):
  choice = select(**kwargs)
  assert choice.implementation == implementation
  assert reason in choice.reason
  assert str(choice) == f"{implementation} ({choice.reason})"


def test_chosen_path_runs_on_cpu_and_is_reported_in_the_summary():
  layer = tl.CausalAttention(16, n_heads=2, dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16), jnp.bfloat16)
  with attention_kernel.record_attention_choices() as choices:
    variables = layer.init(jax.random.PRNGKey(1), x)
    out = layer.apply(variables, x)
  assert choices == [select(jax.default_backend(), jnp.bfloat16, 8, is_causal=True, q_len=16,
                            kv_len=16)]
  assert out.dtype == jnp.bfloat16 and out.shape == x.shape
  forced = layer.clone(implementation="cpu").apply(variables, x)  # declax's formulation
  np.testing.assert_allclose(out.astype(jnp.float32), forced.astype(jnp.float32), atol=1e-6)
  assert f"attention: {choices[0]}" in tl.summary(layer, x)


def test_unknown_implementation_names_the_choices():
  layer = tl.CausalAttention(16, n_heads=2, implementation="flash")
  with pytest.raises(ValueError, match="'cudnn', 'xla', 'cpu'"):
    layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 16)))


def test_cudnn_choice_falls_back_to_xla_when_cudnn_refuses(monkeypatch):
  # Pretend to be a GPU: the selection picks cuDNN, which is absent on this CPU machine, so the
  # call falls back to XLA (same numbers) and the fallback is what gets reported.
  monkeypatch.setattr(attention_kernel.jax, "default_backend", lambda: "gpu")
  q, k, v = _qkv(16, jnp.bfloat16)
  with attention_kernel.record_attention_choices() as choices:
    out = attention_kernel.dot_product_attention(q, k, v, is_causal=True)
  assert [c.implementation for c in choices] == ["cudnn", "xla"]
  assert "cuDNN refused" in choices[1].reason
  with jax.numpy_dtype_promotion("standard"):  # JAX's XLA formulation mixes bf16 and float32
    expected = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
  np.testing.assert_allclose(out.astype(jnp.float32), expected.astype(jnp.float32))
