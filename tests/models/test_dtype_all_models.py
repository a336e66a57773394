"""The mixed-precision policy on every registered model: built with `dtype='bfloat16'`, its
parameters are float32, its outputs float32, and its matmuls and convolutions run in bfloat16
(read from the jaxpr of one train-mode forward pass, so a layer that ignores `dtype` fails)."""

from __future__ import annotations

import functools
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import declax.layers as tl
import declax.models
from declax import decoding, registry
from declax.layers.reversible import with_custom_backward
from declax.models import ReformerLM, TransformerLM
from declax.training import default_config, from_config

KEY = jax.random.PRNGKey(0)
TOKENS = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 1, 32)
BF16 = jnp.dtype("bfloat16")


def _ints(*shape, high=8):
  return jax.random.randint(jax.random.PRNGKey(2), shape, 1, high)


# name -> (model arguments, inputs, float32 matmuls by design). Every model in the registry has
# a case (checked below), so a new model must state how it follows the policy. By design in
# float32: the classifiers' small output heads (MLP, CNN, the ResNets, TransformerEncoder,
# MultiEmbeddingModel) and LSH attention's random-rotation hashing (ReformerLM's LSH layer),
# whose bucket choice (an argmax) bfloat16 would change.
CASES = {
    "AtariCnn": (dict(n_frames=2, hidden_sizes=(4, 4), output_size=6),
                 jnp.ones((2, 3, 16, 16, 3)), 0),
    "AtariCnnBody": (dict(n_frames=2, hidden_sizes=(4, 4, 4), output_size=8),
                     jnp.ones((2, 2, 36, 36, 3)), 0),
    "BERT": (dict(d_model=8, vocab_size=20, max_len=16, n_heads=2, d_ff=16, n_layers=1,
                  mode="train"), (_ints(2, 6), jnp.zeros((2, 6), jnp.int32), _ints(2, 6)), 0),
    "CNN": (dict(filters=(4,), hidden=(8,), n_classes=3), jnp.ones((2, 8, 8, 1)), 1),
    "FrameStackMLP": (dict(n_frames=2, hidden_sizes=(8,), output_size=4), jnp.ones((2, 3, 5)),
                      0),
    "GRULM": (dict(vocab_size=16, d_model=8), _ints(2, 6), 0),
    "LSTMSeq2SeqAttn": (dict(input_vocab_size=10, target_vocab_size=12, d_model=8),
                        (_ints(2, 5), _ints(2, 6)), 0),
    "MLP": (dict(layer_widths=(8,), n_classes=3), jnp.ones((2, 4, 4, 1)), 1),
    "MultiEmbeddingModel": (dict(cardinalities=(7, 3), d_feature=4, n_numeric=2, hidden=(8,),
                                 n_outputs=2), (_ints(2, high=3), _ints(2, high=3),
                                                jnp.ones((2, 2))), 1),
    "NeuralGPU": (dict(d_feature=6, steps=2, vocab_size=3), _ints(2, 4, 4, high=3), 0),
    "RNNLM": (dict(vocab_size=16, d_model=8, n_layers=1), _ints(2, 6), 0),
    "Reformer": (dict(input_vocab_size=32, d_model=16, d_ff=32, n_encoder_layers=1,
                      n_decoder_layers=1, n_heads=2, max_len=16), (TOKENS, TOKENS), 0),
    "ReformerLM": (dict(vocab_size=32, d_model=16, d_ff=32, d_attention_key=8,
                        d_attention_value=8, n_layers=2, n_heads=2, max_len=16,
                        attention_type=["SelfAttention", "LSHSelfAttention"], ff_use_sru=1,
                        attention_kwargs=dict(chunk_len=8, n_chunks_before=1)), TOKENS, 1),
    "ReformerShortenLM": (dict(vocab_size=32, shorten_factor=2, d_embedding=8, d_model=16,
                               d_ff=32, n_layers=1, n_heads=2, max_len=16,
                               attention_type="CausalAttention"), TOKENS, 0),
    "Resnet50": (dict(d_hidden=2, n_output_classes=5), jnp.ones((1, 32, 32, 3)), 1),
    "Transformer": (dict(input_vocab_size=16, d_model=16, d_ff=16, n_encoder_layers=1,
                         n_decoder_layers=1, n_heads=2, max_len=8),
                    (_ints(2, 8), _ints(2, 8)), 0),
    "TransformerEncoder": (dict(vocab_size=16, n_classes=3, d_model=16, d_ff=16, n_layers=1,
                                n_heads=2, max_len=8), _ints(2, 8), 1),
    "TransformerLM": (dict(vocab_size=16, d_model=16, d_ff=32, n_layers=1, n_heads=2,
                           max_len=8), _ints(2, 8), 0),
    "WideResnet": (dict(n_blocks=1, widen_factor=1, base_width=4, n_output_classes=3),
                   jnp.ones((2, 8, 8, 3)), 1),
}
# The quick subset keeps a few cheap models that cover Dense, Embedding, LSTM and attention.
QUICK = {"MLP", "FrameStackMLP", "MultiEmbeddingModel", "RNNLM", "TransformerLM",
         "TransformerEncoder"}


def _subjaxprs(params):
  for value in params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(v, "eqns"):
        yield v
      elif hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
        yield v.jaxpr


def matmul_dtypes(jaxpr) -> list[tuple[str, ...]]:
  """The operand dtypes of every `dot_general` and convolution in `jaxpr`, nested ones too."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
      found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
    for sub in _subjaxprs(eqn.params):
      found += matmul_dtypes(sub)
  return found


def _train_forward(model, variables, inputs):
  mutable = [k for k in variables if k != "params"] or False  # e.g. BatchNorm's batch_stats
  out = model.apply(variables, inputs, rngs={"dropout": jax.random.PRNGKey(3)},
                    mutable=mutable)
  return out[0] if mutable else out


def _case(name):
  marks = [] if name in QUICK else [pytest.mark.slow]  # bfloat16 compiles slowly on CPU
  return pytest.param(name, id=name, marks=marks)


def test_every_registered_model_has_a_case_and_takes_dtype():
  assert set(CASES) == set(declax.models.__all__)
  for name in declax.models.__all__:
    assert "dtype" in inspect.signature(registry.MODELS.get(name)).parameters, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_model_has_float32_params_and_outputs_and_bf16_matmuls(name):
  # Traced, not compiled (bfloat16 compiles slowly on CPU): dtypes are a property of the program.
  kwargs, inputs, n_float32 = CASES[name]
  model = registry.MODELS.build(name, **kwargs, dtype="bfloat16")
  variables = jax.eval_shape(model.init, KEY, inputs)
  floats = {leaf.dtype for leaf in jax.tree.leaves(nn.unbox(variables["params"]))}
  assert floats == {jnp.dtype("float32")}, name
  forward = lambda v, x: _train_forward(model, v, x)
  outputs = jax.eval_shape(forward, variables, inputs)
  outputs = outputs if isinstance(outputs, tuple) else (outputs,)
  float_outputs = [y for y in outputs if jnp.issubdtype(y.dtype, jnp.floating)]
  assert float_outputs and all(y.dtype == jnp.float32 for y in float_outputs), name
  dots = matmul_dtypes(jax.make_jaxpr(forward)(variables, inputs).jaxpr)
  in_bf16 = [d for d in dots if set(d) == {"bfloat16"}]
  others = [d for d in dots if set(d) != {"bfloat16"}]
  assert in_bf16, f"{name}: no matmul or convolution in bfloat16"
  assert len(others) == n_float32, f"{name}: matmuls outside bfloat16: {others}"


@pytest.mark.parametrize("name", [_case(n) for n in sorted(CASES)])
def test_bf16_model_outputs_are_finite(name):
  kwargs, inputs, _ = CASES[name]
  model = registry.MODELS.build(name, **kwargs, dtype="bfloat16")
  variables = jax.jit(model.init)(KEY, inputs)
  outputs = jax.jit(lambda v, x: _train_forward(model, v, x))(variables, inputs)
  outputs = outputs if isinstance(outputs, tuple) else (outputs,)
  floats = [y for y in outputs if jnp.issubdtype(y.dtype, jnp.floating)]
  assert floats and all(bool(jnp.all(jnp.isfinite(y))) for y in floats), name


@pytest.mark.parametrize("name", [_case(n) for n in sorted(CASES)])
def test_build_model_with_config_dtype_bfloat16(name):
  kwargs, _, _ = CASES[name]
  config = default_config.get_config()
  config.model = dict(name=name, **kwargs)
  config.dtype = "bfloat16"
  model = from_config.build_model(config)  # no ConfigError A2: the model takes dtype
  assert BF16 in _layer_dtypes(model), name  # config.dtype reached the layers


def _layer_dtypes(layer) -> set:
  """The `dtype` fields of `layer` and all its sublayers."""
  dtypes = {jnp.dtype(layer.dtype)} if getattr(layer, "dtype", None) is not None else set()
  for sub in layer.sublayers:
    dtypes |= _layer_dtypes(sub)
  return dtypes


# ------------------------------------------------------------------------------------------------
# Reversible gradients, training and decoding in bfloat16
# ------------------------------------------------------------------------------------------------


def _reformer_lm(**kwargs):
  args = dict(vocab_size=16, d_model=16, d_ff=32, d_attention_key=8, d_attention_value=8,
              n_layers=2, n_heads=2, max_len=16, dropout=0.0)
  return ReformerLM(**{**args, **kwargs})


def _token_loss(logits, tokens):
  assert logits.dtype == jnp.float32  # (traced once) the policy's float32 logits
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], -1))


@pytest.mark.slow  # two backward passes of a 2-layer ReformerLM (~10 s on 2 cores)
def test_bf16_reversible_gradients_close_to_ordinary_backprop():
  """The reversible backward pass rebuilds each block's inputs by subtraction in bfloat16; the
  rounding makes its gradients differ slightly from ordinary backprop of the same model."""
  model = _reformer_lm(dropout=0.1, dtype="bfloat16")
  plain = with_custom_backward(model, False)
  params = model.init(KEY, TOKENS % 16)["params"]

  def grads(m):
    def loss(p):
      return _token_loss(m.apply({"params": p}, TOKENS % 16, rngs={"dropout": KEY}), TOKENS % 16)
    return jax.jit(jax.grad(loss))(params)

  reversible, ordinary = grads(model), grads(plain)
  assert {g.dtype for g in jax.tree.leaves(reversible)} == {jnp.dtype("float32")}
  for a, b in zip(jax.tree.leaves(reversible), jax.tree.leaves(ordinary), strict=True):
    scale = float(jnp.linalg.norm(b)) + 1e-6
    assert float(jnp.linalg.norm(a - b)) <= 0.05 * scale  # bfloat16 rounding, not a wrong grad


def _counting_batches(n, batch=8, length=16, vocab=16):
  """Sequences `start, start + step, ...` (mod vocab): learnable from the first two tokens."""
  rng = np.random.default_rng(0)
  for _ in range(n):
    start, step = rng.integers(0, vocab, (batch, 1)), rng.integers(1, 4, (batch, 1))
    yield jnp.asarray((start + step * np.arange(length)) % vocab, jnp.int32)


@pytest.mark.slow  # two 30-step runs of a tiny ReformerLM (~20 s on 2 cores)
def test_reformer_lm_bf16_loss_tracks_float32():
  runs = {}
  for dtype in (None, "bfloat16"):
    model = _reformer_lm(dtype=dtype)
    tx = optax.adam(3e-3)
    params = model.init(KEY, TOKENS % 16)["params"]  # the same start for both
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch, model=model, tx=tx):
      loss, grads = jax.value_and_grad(
          lambda p: _token_loss(model.apply({"params": p}, batch), batch))(params)
      with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts and floats
        updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for batch in _counting_batches(30):
      params, opt_state, loss = step(params, opt_state, batch)
      losses.append(float(loss))
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    runs[dtype] = np.asarray(losses)
  f32, bf16 = runs[None], runs["bfloat16"]
  assert f32[-1] < 0.8 * f32[0]  # it learns, so "tracking" means something
  np.testing.assert_allclose(bf16[::5], f32[::5], rtol=0.05)
  np.testing.assert_allclose(bf16[-1], f32[-1], rtol=0.05)


def _check_greedy_decoding_matches_full_forward(make_model):
  """Greedy bfloat16 decoding (predict mode, caches) picks, at every step, the argmax of the
  bfloat16 full forward pass over the decoded sequence (up to bfloat16 near-ties)."""
  model = make_model(mode="eval")
  variables = jax.jit(model.init)(KEY, TOKENS[:, :8] % 16)
  prefix = TOKENS[:, :3] % 16
  sample = decoding.autoregressive_sample(model, variables, prefix=prefix, max_length=8,
                                          temperature=0.0)
  sequence = jnp.concatenate([prefix, sample], axis=1)
  logits = jax.jit(model.apply)(variables, sequence)[:, prefix.shape[1]:]
  assert logits.dtype == jnp.float32
  full_argmax = jnp.argmax(logits, axis=-1)
  picked = jnp.take_along_axis(logits, sample[..., None], -1)[..., 0]
  gap = jnp.max(logits, axis=-1) - picked  # 0 where the tokens agree
  assert float(jnp.mean(full_argmax == sample)) >= 0.9, (full_argmax, sample)
  assert float(jnp.max(gap)) <= 0.05  # a disagreement can only be a bfloat16 near-tie


@pytest.mark.slow  # compiles the decoding loop (~8 s on 2 cores)
def test_transformer_lm_bf16_greedy_decoding_matches_full_forward():
  _check_greedy_decoding_matches_full_forward(functools.partial(
      TransformerLM, vocab_size=16, d_model=16, d_ff=32, n_layers=2, n_heads=2, max_len=16,
      dropout=0.0, dtype="bfloat16"))


@pytest.mark.slow  # compiles the decoding loop of a reversible model (~15 s on 2 cores)
def test_reformer_lm_bf16_greedy_decoding_matches_full_forward():
  _check_greedy_decoding_matches_full_forward(functools.partial(_reformer_lm, dtype="bfloat16"))



@pytest.mark.parametrize("layer", [
    tl.LSTM(8, mode="predict", dtype="bfloat16"),
    tl.GRU(8, mode="predict", dtype="bfloat16"),
    tl.SRU(8, mode="predict", dtype="bfloat16"),
], ids=["LSTM", "GRU", "SRU"])
def test_recurrent_layers_compute_in_bf16_with_a_float32_carry(layer):
  x = jnp.ones((2, 5, 8), jnp.bfloat16)
  variables = layer.init(KEY, x)
  y, updates = layer.apply(variables, x, mutable=["cache"])
  assert y.dtype == jnp.bfloat16  # the outputs in the compute dtype ...
  carries = jax.tree.leaves(updates["cache"])
  assert carries and {c.dtype for c in carries} == {jnp.dtype("float32")}  # ... the state not
  dots = matmul_dtypes(jax.make_jaxpr(lambda v: layer.apply(v, x, mutable=["cache"]))(
      variables).jaxpr)
  assert dots and all(set(d) == {"bfloat16"} for d in dots), dots


def test_lstm_cell_returns_its_state_in_the_state_dtype():
  cell = tl.LSTMCell(4, dtype="bfloat16")
  x, state = jnp.ones((2, 3), jnp.bfloat16), jnp.zeros((2, 8), jnp.float32)
  variables = cell.init(KEY, (x, state))
  h, new_state = cell.apply(variables, (x, state))
  assert (h.dtype, new_state.dtype) == (jnp.bfloat16, jnp.float32)  # a Scan keeps its carry
