"""PureLSHSelfAttentionWrapper and MixedLSHSelfAttention: the wrapper is its projections around
the pure attention, decoding equals the full pass (also with rotary embeddings), the mixed layer
picks standard attention on short inputs, and bad arguments are named."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax
import declax.layers as tl
from declax.layers.lsh_wrappers import LSHWrapperError


def _x(shape, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), shape, jnp.float32)


def _decode(layer, variables, items):
  """Feeds `items` (a tuple of `(batch, length, ...)` arrays) to a predict-mode `layer` one
  position per call and concatenates the outputs."""
  first = tuple(a[:, :1] for a in items)
  cache = layer.init(jax.random.PRNGKey(0), first if len(first) > 1 else first[0])["cache"]
  step = jax.jit(lambda c, xs: layer.apply({**variables, "cache": c}, xs, mutable=["cache"]))
  outs = []
  for t in range(items[0].shape[1]):
    xs = tuple(a[:, t:t + 1] for a in items)
    out, state = step(cache, xs if len(xs) > 1 else xs[0])
    cache = state["cache"]
    outs.append(out)
  return jnp.concatenate(outs, axis=1)


def _assert_decoded(out, expected):
  np.testing.assert_allclose(out[:, 1:], expected[:, 1:], atol=1e-5)
  # Position 0 sees only itself behind the -1e5 self-mask (float32 precision, as in Trax).
  np.testing.assert_allclose(out[:, 0], expected[:, 0], rtol=5e-3, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("num_weights", [2, 3])
def test_wrapper_is_projections_around_the_pure_attention(num_weights):
  # One bucket and one chunk: the pure attention does not depend on the hash rotations.
  common = dict(n_heads=2, causal=True, chunk_len=8, n_chunks_before=0, n_hashes=1,
                n_buckets=1)
  layer = tl.PureLSHSelfAttentionWrapper(d_qk=4, d_v=4, num_weights=num_weights, mode="eval",
                                         **common)
  x = _x((2, 8, 8))
  variables = layer.init(jax.random.PRNGKey(1), x)
  dense = [leaf for leaf in jax.tree.leaves(nn.unbox(variables["params"]), is_leaf=lambda d:
           isinstance(d, dict) and "kernel" in d)]
  proj = [x @ d["kernel"] + d["bias"][None, None] for d in dense[:-1]]
  qk, v = ((proj[0] + proj[1]) / 2, proj[2]) if num_weights == 3 else proj
  split = tl.SplitIntoHeads(2)
  o = tl.PureLSHSelfAttention(mode="eval", **common).apply({}, (split.apply({}, qk),
                                                                split.apply({}, v)))
  expected = tl.MergeHeads(2).apply({}, o) @ dense[-1]["kernel"] + dense[-1]["bias"][None, None]
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("num_weights,rotary", [(2, False), (3, True), (2, True)])
def test_wrapper_decoding_equals_full_pass(num_weights, rotary):
  # The chunks cover the sequence: the full pass and Trax's decoding rule see the same keys.
  common = dict(n_heads=2, d_qk=4, d_v=4, causal=True, chunk_len=16, n_chunks_before=0,
                n_hashes=2, n_buckets=4, predict_mem_len=16, predict_drop_len=8,
                num_weights=num_weights, rotary_position_emb=rotary)
  x = _x((2, 16, 8))
  ref = tl.PureLSHSelfAttentionWrapper(mode="eval", **common)
  variables = ref.init(jax.random.PRNGKey(1), x)
  expected = ref.apply(variables, x)
  if rotary:  # the rotation is applied (and tracked by position when decoding)
    plain = tl.PureLSHSelfAttentionWrapper(mode="eval", **{**common, "rotary_position_emb": False})
    assert not np.allclose(plain.apply(variables, x), expected, atol=1e-3)
  predict = tl.PureLSHSelfAttentionWrapper(mode="predict", **common)
  _assert_decoded(_decode(predict, variables, (x,)), expected)


@pytest.mark.slow
def test_wrapper_masked_ignores_padding():
  layer = tl.PureLSHSelfAttentionWrapper(n_heads=2, d_qk=4, d_v=4, masked=True, chunk_len=8,
                                         n_hashes=2, n_buckets=2, mode="eval")
  x = _x((2, 16, 8))
  mask = jnp.arange(16)[None, :] < jnp.array([[10], [16]])
  variables = layer.init(jax.random.PRNGKey(1), (x, mask))
  apply = jax.jit(lambda x: layer.apply(variables, (x, mask)))
  y, y2 = apply(x), apply(x.at[0, 12:].set(5.0))
  np.testing.assert_allclose(y2[0, :10], y[0, :10], atol=1e-5)
  np.testing.assert_allclose(y2[1], y[1], atol=1e-6)


@pytest.mark.slow
def test_mixed_uses_standard_attention_up_to_std_length():
  common = dict(n_heads=2, causal=True, chunk_len=8, n_hashes=2, n_buckets=4)
  mixed = tl.MixedLSHSelfAttention(std_length=8, mode="eval", **common)
  qk, v = _x((4, 8, 4), 1), _x((4, 8, 3), 2)
  standard = tl.DotProductCausalAttention(mode="eval").apply({}, (qk, qk, v))
  np.testing.assert_allclose(mixed.apply({}, (qk, v)), standard, atol=1e-6)
  qk, v = _x((4, 16, 4), 1), _x((4, 16, 3), 2)   # longer than std_length: LSH
  lsh = tl.PureLSHSelfAttention(mode="eval", **common).apply({}, (qk, v))
  np.testing.assert_allclose(mixed.apply({}, (qk, v)), lsh, atol=1e-6)
  always_lsh = tl.MixedLSHSelfAttention(mode="eval", **common)     # std_length=None
  np.testing.assert_allclose(always_lsh.apply({}, (qk[:, :8], v[:, :8])),
                             tl.PureLSHSelfAttention(mode="eval", **common).apply(
                                 {}, (qk[:, :8], v[:, :8])), atol=1e-6)


def test_mixed_non_causal_masks_per_example():
  mixed = tl.MixedLSHSelfAttention(n_heads=2, masked=True, std_length=8, mode="eval")
  qk, v = _x((4, 8, 4), 1), _x((4, 8, 3), 2)
  mask = jnp.arange(8)[None, :] < jnp.array([[5], [8]])               # (batch, length)
  out = mixed.apply({}, (qk, v, mask))
  np.testing.assert_allclose(mixed.apply({}, (qk, v, jnp.repeat(mask, 2, axis=0))), out)
  dots = jnp.einsum("rld,rmd->rlm", qk, qk) / 2.0
  dots = jnp.where(jnp.repeat(mask, 2, axis=0)[:, None, :], dots, -1e9)
  np.testing.assert_allclose(out, jax.nn.softmax(dots) @ v, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("std_length", [16, None])
def test_mixed_decoding_equals_full_pass(std_length):
  common = dict(n_heads=2, causal=True, chunk_len=8, n_chunks_before=0, n_hashes=2,
                n_buckets=2, predict_mem_len=8, predict_drop_len=4, std_length=std_length)
  qk, v = _x((4, 8, 4), 1), _x((4, 8, 3), 2)
  expected = tl.MixedLSHSelfAttention(mode="eval", **common).apply({}, (qk, v))
  out = _decode(tl.MixedLSHSelfAttention(mode="predict", **common), {}, (qk, v))
  if std_length:
    np.testing.assert_allclose(out, expected, atol=1e-5)
  else:
    _assert_decoded(out, expected)


@pytest.mark.slow
def test_mixed_force_no_dropout_and_train_dropout():
  kwargs = dict(n_heads=2, causal=True, std_length=8, attention_dropout=0.5)
  qk, v = _x((4, 8, 4), 1), _x((4, 8, 3), 2)
  rngs = {"dropout": jax.random.PRNGKey(3)}
  quiet = tl.MixedLSHSelfAttention(force_no_dropout=True, **kwargs)
  assert quiet.attention_dropout == 0.0
  evaluated = tl.MixedLSHSelfAttention(mode="eval", **kwargs).apply({}, (qk, v))
  np.testing.assert_allclose(quiet.apply({}, (qk, v), rngs=rngs), evaluated, atol=1e-6)
  noisy = tl.MixedLSHSelfAttention(**kwargs).apply({}, (qk, v), rngs=rngs)
  assert not np.allclose(noisy, evaluated, atol=1e-3)


def test_bad_wrapper_and_mixed_arguments_are_named():
  with pytest.raises(LSHWrapperError, match="weights_format='sparse' is not supported"):
    tl.PureLSHSelfAttentionWrapper(weights_format="sparse")
  with pytest.raises(LSHWrapperError, match="did you mean model"):
    tl.PureLSHSelfAttentionWrapper(weights_format="modle")
  with pytest.raises(LSHWrapperError, match="num_weights must be 2"):
    tl.PureLSHSelfAttentionWrapper(num_weights=4)
  with pytest.raises(LSHWrapperError, match="did you mean MixedLSHSelfAttention"):
    tl.PureLSHSelfAttentionWrapper(pure_lsh_implementation="MixedLSHSelfAtention")
  with pytest.raises(LSHWrapperError, match="use masked=False"):
    tl.MixedLSHSelfAttention(causal=True, masked=True)
  with pytest.raises(LSHWrapperError, match="use masked=True"):
    tl.MixedLSHSelfAttention(causal=False)
  layer = tl.PureLSHSelfAttentionWrapper(n_heads=2, d_qk=4, d_v=4, chunk_len=8, n_buckets=2)
  with pytest.raises(tl.LayerError, match=r"inputs have 12 features, .* n_heads \* d_qk = 8"
                     ) as info:
    layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 12)))
  assert isinstance(info.value.cause, LSHWrapperError)
  assert issubclass(LSHWrapperError, declax.DeclaxError) and issubclass(LSHWrapperError,
                                                                         ValueError)
