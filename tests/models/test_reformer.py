"""Reformer models: shapes, reversible gradients equal ordinary backprop, decoding token by token
equals the full pass, bad arguments, the registry, and 8-device meshes equal one device."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax
import declax.layers as tl
from declax import decoding, registry
from declax.layers.position_encodings import AxialShapeError
from declax.layers.reversible import with_custom_backward
from declax.models import Reformer, ReformerLM, ReformerShortenLM
from declax.models.reformer import ReformerConfigError
from tests.subprocess_utils import run_snippet

KEY = jax.random.PRNGKey(0)
TOKENS = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 1, 32)


def _lm(**kwargs):
  args = dict(vocab_size=32, d_model=16, d_ff=32, d_attention_key=8, d_attention_value=8,
              n_layers=2, n_heads=2, max_len=16, attention_type="CausalAttention", dropout=0.0)
  return ReformerLM(**{**args, **kwargs})


@pytest.mark.slow
def test_reformer_lm_shapes_and_tree():
  model = _lm(ff_chunk_size=8)
  variables = model.init(KEY, TOKENS)
  assert model.apply(variables, TOKENS).shape == (2, 16, 32)
  text = str(model)
  assert "ReversibleSerial_in2_out2[" in text and "ReversibleHalfResidualDecoderAttn" in text
  assert "BatchLeadingAxes" in text and "Chunk" in text


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [
    dict(attention_type="SelfAttention", attention_kwargs=dict(chunk_len=8, n_chunks_before=1)),
    dict(pos_type="axial", pos_axial_shape=(4, 4), pos_d_axial_embs=(8, 8), ff_use_sru=1),
    dict(attention_type=["CausalAttention", "SelfAttention"], pos_type="fixed-base",
         ff_chunk_size=4),
], ids=["chunked_self_attention", "axial_sru", "alternating"])
def test_reformer_lm_variants_run(kwargs):
  model = _lm(dropout=0.1, **kwargs)
  variables = model.init(KEY, TOKENS)
  out = model.apply(variables, TOKENS, rngs={"dropout": jax.random.PRNGKey(2)})
  assert out.shape == (2, 16, 32) and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow
def test_reformer_lm_gradients_equal_ordinary_backprop_with_dropout():
  model = _lm(dropout=0.1, ff_chunk_size=8)
  plain = with_custom_backward(model, False)
  params = model.init(KEY, TOKENS)["params"]

  def loss_and_grad(m):
    def loss(p):
      logits = m.apply({"params": p}, TOKENS, rngs={"dropout": jax.random.PRNGKey(3)})
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), TOKENS[..., None], -1))
    return jax.jit(jax.value_and_grad(loss))(params)

  (loss, grads), (loss_plain, grads_plain) = loss_and_grad(model), loss_and_grad(plain)
  np.testing.assert_allclose(loss, loss_plain, rtol=1e-6)
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads_plain))
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_plain), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale)


def _decode_step_by_step(model_fn, tokens):
  """Logits of the predict-mode model fed one token at a time, and of the eval-mode model."""
  variables = model_fn(mode="eval").init(KEY, tokens)
  full = model_fn(mode="eval").apply(variables, tokens)
  predict = model_fn(mode="predict")
  cache = predict.init(KEY, tokens[:, :1])["cache"]
  step = jax.jit(lambda c, t: predict.apply({**variables, "cache": c}, t, mutable=["cache"]))
  shifted = jnp.pad(tokens, ((0, 0), (1, 0)))[:, :-1]  # predict mode does not shift right
  outs = []
  for t in range(tokens.shape[1]):
    logits, updates = step(cache, shifted[:, t:t + 1])
    cache = updates["cache"]
    outs.append(logits)
  return jnp.concatenate(outs, axis=1), full


@pytest.mark.slow
@pytest.mark.parametrize("kwargs,atol", [
    (dict(), 1e-4),
    (dict(attention_type="SelfAttention", pos_type="axial", pos_axial_shape=(4, 4),
          pos_d_axial_embs=(8, 8)), 1e-4),
    (dict(ff_use_sru=(2, 8)), 1e-5),
    (dict(attention_type="PureLSHSelfAttentionWrapper", ff_use_sru=1,
          attention_kwargs=dict(chunk_len=8, n_chunks_before=0, n_hashes=1, n_buckets=2,
                                predict_mem_len=8, predict_drop_len=8, num_weights=2,
                                rotary_position_emb=True)), 2e-5),
], ids=["causal_attention", "self_attention_axial", "sru", "pure_lsh_wrapper_sru"])
def test_reformer_lm_decodes_token_by_token_like_the_full_pass(kwargs, atol):
  stepped, full = _decode_step_by_step(functools.partial(_lm, **kwargs), TOKENS[:, :8])
  np.testing.assert_allclose(stepped, full, atol=atol)
  sample = decoding.autoregressive_sample(
      _lm(mode="eval", **kwargs), _lm(mode="eval", **kwargs).init(KEY, TOKENS),
      prefix=TOKENS[:, :2], max_length=6, temperature=0.0)
  assert sample.shape == (2, 6)


@pytest.mark.slow
def test_reformer_encoder_decoder_and_shorten_lm():
  model = Reformer(32, d_model=16, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, n_heads=2,
                   max_len=16, dropout=0.0)
  assert (model.n_in, model.n_out) == (2, 2)
  inputs = TOKENS.at[:, 12:].set(0)
  variables = model.init(KEY, (inputs, TOKENS))
  logits, targets = model.apply(variables, (inputs, TOKENS))
  assert logits.shape == (2, 16, 32)
  np.testing.assert_array_equal(targets, TOKENS)
  # Padding in the inputs is masked: changing padded tokens does not change the logits.
  other = model.apply(variables, (inputs.at[:, 14].set(0), TOKENS))[0]
  np.testing.assert_allclose(other, logits, atol=1e-5)
  short = ReformerShortenLM(32, shorten_factor=2, d_embedding=8, d_model=16, d_ff=32,
                            n_layers=1, n_heads=2, max_len=16, attention_type="CausalAttention")
  assert short.apply(short.init(KEY, TOKENS), TOKENS, rngs={"dropout": KEY}).shape == (2, 16, 32)


@pytest.mark.slow
def test_reformer_encoder_decoder_decodes_token_by_token_like_the_full_pass():
  def make(mode):
    return Reformer(32, d_model=16, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, n_heads=2,
                    max_len=16, dropout=0.0, mode=mode)
  source, targets = TOKENS, TOKENS[:, :8]
  variables = make("eval").init(KEY, (source, targets))
  full, _ = make("eval").apply(variables, (source, targets))
  predict = make("predict")
  cache = predict.init(KEY, (source, targets[:, :1]))["cache"]
  shifted = jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]
  outs = []
  for t in range(targets.shape[1]):
    (logits, _), updates = predict.apply({**variables, "cache": cache},
                                         (source, shifted[:, t:t + 1]), mutable=["cache"])
    cache = updates["cache"]
    outs.append(logits)
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-4)
  sample = decoding.autoregressive_sample(make("eval"), variables, inputs=source, max_length=5,
                                          temperature=0.0)
  assert sample.shape == (2, 5)


def test_reformer_bad_arguments_are_named():
  with pytest.raises(AxialShapeError, match=r"pos_axial_shape \(4, 3\) multiplies to 12, but "
                     r"max_len is 16"):
    _lm(pos_type="axial", pos_axial_shape=(4, 3), pos_d_axial_embs=(8, 8))
  with pytest.raises(AxialShapeError, match="sum to 12, but d_model is 16"):
    _lm(pos_type="axial", pos_axial_shape=(4, 4), pos_d_axial_embs=(8, 4))
  with pytest.raises(ReformerConfigError, match="did you mean fixed-base"):
    _lm(pos_type="fixed-bas")
  with pytest.raises(ReformerConfigError, match="did you mean CausalAttention"):
    _lm(attention_type="CausalAtention")
  with pytest.raises(ReformerConfigError, match="multiple of the number of attention types"):
    _lm(n_layers=3, attention_type=["CausalAttention", "SelfAttention"])
  with pytest.raises(ReformerConfigError, match="no 'predict' mode"):
    ReformerShortenLM(32, mode="predict")
  with pytest.raises(ReformerConfigError, match="ff_sparsity must be 0"):
    _lm(ff_sparsity=4)
  assert issubclass(ReformerConfigError, declax.DeclaxError)


def test_reformer_models_are_registered():
  model = registry.get_model("ReformerLM", vocab_size=32, d_model=16, d_ff=32, n_layers=1,
                             n_heads=2, max_len=16, attention_type="CausalAttention")
  assert isinstance(model, tl.Serial)
  assert {"Reformer", "ReformerLM", "ReformerShortenLM"} <= set(registry.model_names())


MESH_SNIPPET = """
import json
import jax, numpy as np
import declax.layers as tl
from declax import sharding
from declax.models import ReformerLM
from declax.training import Loop, TrainTask, make_optimizer
from declax.training.metric_writers import MultiWriter

class Batches:
  def __init__(self):
    self.index = 0
  def __iter__(self):
    return self
  def __next__(self):
    rng = np.random.default_rng([7, self.index])
    self.index += 1
    x = rng.integers(1, 32, (8, 16)).astype(np.int32)
    return x, x, np.ones(x.shape, np.float32)
  def get_state(self):
    return {'index': self.index}
  def set_state(self, state):
    self.index = state['index']

def losses(mesh):
  model = ReformerLM(32, d_model=16, d_ff=32, d_attention_key=8, d_attention_value=8, n_layers=2,
                     n_heads=2, max_len=16, attention_type='SelfAttention', dropout=0.0,
                     ff_chunk_size=8)
  task = TrainTask(Batches(), tl.WeightedCategoryCrossEntropy(), make_optimizer('adam', 1e-2),
                   n_steps_per_checkpoint=None)
  loop = Loop(model, task, mesh=mesh, writers=MultiWriter([]), log_every=1,
              print_summary=False, async_checkpoints=False)
  loop.run(4)
  return [v for _, v in loop.losses]

out = {'one': losses(sharding.mesh_from_config({'data': 1}, devices=jax.devices()[:1]))}
for name, axes in [('data8', {'data': 8}), ('mixed', {'data': 2, 'fsdp': 2, 'tensor': 2}),
                   ('fsdp8', {'fsdp': 8})]:
  out[name] = losses(sharding.mesh_from_config(axes))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_reformer_lm_on_8_device_meshes_equals_one_device():
  out = run_snippet(MESH_SNIPPET, n_devices=8, timeout=900)
  for name in ("data8", "mixed", "fsdp8"):
    np.testing.assert_allclose(out[name], out["one"], rtol=1e-5, atol=1e-6)
