"""TransformerLM, TransformerEncoder and Transformer: structure, printing, causality, masks,
logical axis names, scan-over-layers numerics, remat and mixed precision."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax import sharding
from declax.models import Transformer, TransformerEncoder, TransformerLM

V = 11
TINY = dict(d_model=8, d_ff=16, n_heads=2, max_len=32)


def tokens(shape, seed=0, low=1, high=V):
  return jnp.asarray(np.random.RandomState(seed).randint(low, high, shape), jnp.int32)


def lm(n_layers=2, **kwargs):
  return TransformerLM(V, n_layers=n_layers, **{**TINY, **kwargs})


def boxed_leaves(tree):
  is_box = lambda x: isinstance(x, nn.Partitioned)
  return jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_box)[0]


EXPECTED_LM = """Serial[
  ShiftRight(1)
  Embedding_11_8
  Dropout
  PositionalEncoding
  DecoderBlock[
    Residual[
      LayerNorm
      CausalAttention
      Dropout
    ]
    Residual[
      FeedForward[
        LayerNorm
        Dense_16
        Relu
        Dropout
        Dense_8
      ]
      Dropout
    ]
  ]
  LayerNorm
  Dense_11
]"""


def test_lm_prints_like_trax():
  assert str(lm(n_layers=1)) == EXPECTED_LM
  scanned = str(lm(n_layers=3, scan_layers=True))
  assert scanned.startswith("Serial[\n  ShiftRight(1)\n")
  assert "  ScanLayers_3[\n    DecoderBlock[\n      Residual[\n" in scanned
  assert scanned.count("DecoderBlock") == 1


@pytest.mark.slow
def test_lm_is_causal_and_mode_independent():
  model = lm(dropout=0.0)
  x = tokens((2, 9))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  eval_model = tl.with_mode(model, "eval")
  logits = eval_model.apply(variables, x)
  assert logits.shape == (2, 9, V) and logits.dtype == jnp.float32
  changed = eval_model.apply(variables, x.at[:, 5].set(1 + x[:, 5] % (V - 1)))
  # Position t predicts token t from tokens < t: changing token 5 leaves logits 0..5 alone.
  np.testing.assert_allclose(changed[:, :6], logits[:, :6], atol=1e-6)
  assert not np.allclose(changed[:, 6:], logits[:, 6:])
  # Without dropout, train and eval modes agree on the same variables.
  np.testing.assert_allclose(model.apply(variables, x), logits, atol=1e-6)


@pytest.mark.slow
def test_lm_dropout_only_in_train_mode():
  model = lm(dropout=0.5)
  x = tokens((2, 6))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  a = model.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(1)})
  b = model.apply(variables, x, rngs={"dropout": jax.random.PRNGKey(2)})
  assert not np.allclose(a, b)
  eval_model = tl.with_mode(model, "eval")
  np.testing.assert_array_equal(eval_model.apply(variables, x), eval_model.apply(variables, x))


def test_every_parameter_has_logical_axis_names():
  with nn.logical_axis_rules(sharding.rules_from_config()):  # names are kept only under rules
    _check_every_parameter_has_logical_axis_names()


@pytest.mark.slow
def test_outside_rules_init_returns_plain_arrays():
  params = lm().init(jax.random.PRNGKey(0), tokens((2, 5)))["params"]
  leaves = [leaf for _, leaf in boxed_leaves(params)]
  assert leaves and all(isinstance(leaf, jax.Array) for leaf in leaves)


def _check_every_parameter_has_logical_axis_names():
  for model, x in [(lm(), tokens((2, 5))), (lm(scan_layers=True), tokens((2, 5))),
                   (Transformer(V, n_encoder_layers=1, n_decoder_layers=1, **TINY),
                    (tokens((2, 5)), tokens((2, 4))))]:
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    leaves = boxed_leaves(params)
    assert leaves
    for path, leaf in leaves:
      assert isinstance(leaf, nn.Partitioned), jax.tree_util.keystr(path)
      assert len(leaf.names) == leaf.value.ndim, jax.tree_util.keystr(path)
  names = {leaf.names for _, leaf in boxed_leaves(
      jax.eval_shape(lm().init, jax.random.PRNGKey(0), tokens((2, 5)))["params"])}
  assert ("vocab", "embed") in names and ("embed", "vocab") in names
  assert ("embed", "mlp") in names and ("mlp", "embed") in names
  assert ("embed", "heads", "kv") in names and ("heads", "kv", "embed") in names


def test_activation_constraints_reach_the_mesh():
  mesh = sharding.mesh_from_config({"data": 1})
  rules = sharding.rules_from_config()
  model, x = lm(n_layers=1), tokens((2, 5))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  with sharding.mesh_context(mesh, rules):
    run = lambda v: model.apply(v, x, rngs={"dropout": jax.random.PRNGKey(1)})
    jaxpr = str(jax.make_jaxpr(run)(variables))
  # The block's input and two residual outputs, 5 feed-forward outputs, attention's own.
  assert jaxpr.count("sharding_constraint") >= 8


def stack_blocks(unrolled_params, first, n_layers):
  """The unrolled model's params with blocks layers_{first..} stacked as ScanLayers' layout."""
  blocks = [unrolled_params.pop(f"layers_{first + i}") for i in range(n_layers)]
  renamed = {}
  for key, value in unrolled_params.items():
    index = int(key.split("_")[1])
    renamed[f"layers_{index - n_layers + 1}" if index > first else key] = value
  renamed[f"layers_{first}"] = {"layer": jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)}
  return renamed


@pytest.mark.slow
@pytest.mark.usefixtures("logical_axes")
def test_scan_layers_matches_unrolled_model():
  x = tokens((2, 7))
  unrolled, scanned = lm(n_layers=3, dropout=0.0), lm(n_layers=3, dropout=0.0, scan_layers=True)
  params = nn.unbox(jax.jit(unrolled.init)(jax.random.PRNGKey(0), x)["params"])
  stacked = stack_blocks(dict(params), first=4, n_layers=3)
  expected = jax.tree.map(jnp.shape, nn.unbox(
      jax.eval_shape(scanned.init, jax.random.PRNGKey(0), x)["params"]))
  assert jax.tree.map(jnp.shape, stacked) == expected
  want = tl.with_mode(unrolled, "eval").apply({"params": params}, x)
  got = tl.with_mode(scanned, "eval").apply({"params": stacked}, x)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  # Stacked parameters keep their logical names behind a leading 'layers' axis.
  boxed = jax.jit(scanned.init)(jax.random.PRNGKey(0), x)["params"]["layers_4"]["layer"]
  names = {leaf.names for _, leaf in boxed_leaves(boxed)}
  assert all(n[0] == "layers" for n in names)
  assert ("layers", "embed", "heads", "kv") in names


def test_scan_layers_traces_once():
  x = tokens((2, 5))

  def size(model):
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    return len(str(jax.make_jaxpr(lambda v: model.apply(v, x, rngs={"dropout": jax.random.PRNGKey(
        1)}))(variables)))

  assert size(lm(n_layers=6, scan_layers=True)) == size(lm(n_layers=2, scan_layers=True))
  assert size(lm(n_layers=6)) > 2 * size(lm(n_layers=2)) * 0.9


@pytest.mark.slow
@pytest.mark.parametrize("scan_layers", [False, True])
def test_remat_keeps_values_and_gradients(scan_layers):
  x = tokens((2, 6))
  plain = lm(dropout=0.0, scan_layers=scan_layers)
  remat = lm(dropout=0.0, scan_layers=scan_layers, remat_policy="dots")
  variables = jax.jit(plain.init)(jax.random.PRNGKey(0), x)

  def loss(model):
    return lambda v: jnp.mean(model.apply(v, x) ** 2)

  g_plain = jax.jit(jax.grad(loss(plain)))(variables)
  g_remat = jax.jit(jax.grad(loss(remat)))(variables)
  for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert "remat" in str(jax.make_jaxpr(jax.grad(loss(remat)))(variables))
  with pytest.raises(ValueError, match="remat_policy"):
    lm(remat_policy="sometimes")


@pytest.mark.slow
def test_bfloat16_compute_with_float32_params_and_loss():
  x = tokens((2, 6))
  fp32, bf16 = lm(dropout=0.0), lm(dropout=0.0, dtype="bfloat16")
  variables = jax.jit(bf16.init)(jax.random.PRNGKey(0), x)
  assert {leaf.dtype for leaf in jax.tree.leaves(nn.unbox(variables))} == {jnp.dtype("float32")}
  logits = bf16.apply(variables, x)
  assert logits.dtype == jnp.float32  # computed in bf16, cast back (the policy)
  np.testing.assert_allclose(logits.astype(jnp.float32), fp32.apply(variables, x), atol=0.1)
  loss_layer = tl.WeightedCategoryCrossEntropy()

  def loss(v):
    return loss_layer.apply({}, (bf16.apply(v, x), x, jnp.ones(x.shape)))

  value, grads = jax.jit(jax.value_and_grad(loss))(variables)
  assert value.dtype == jnp.float32
  assert {g.dtype for g in jax.tree.leaves(nn.unbox(grads))} == {jnp.dtype("float32")}


def test_encoder_classifier_outputs_log_probs_and_ignores_padding():
  model = TransformerEncoder(V, n_classes=3, n_layers=2, dropout=0.0, **TINY)
  assert model.n_in == 1 and model.n_out == 1
  x = tokens((2, 6)).at[:, 4:].set(0)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  log_probs = model.apply(variables, x)
  assert log_probs.shape == (2, 3)
  np.testing.assert_allclose(jnp.exp(log_probs).sum(-1), 1.0, rtol=1e-5)
  # The attention ignores pad tokens, so what sits at their embedding is irrelevant:
  # permuting the non-pad tokens' order changes the output; the pads' own ids are all 0.
  assert not np.allclose(model.apply(variables, x[:, ::-1]), log_probs)


@pytest.mark.slow
def test_encoder_on_flattened_images_without_padding():
  model = TransformerEncoder(17, n_classes=10, n_layers=1, pad_id=None, flatten_inputs=True,
                             **{**TINY, "max_len": 64})
  images = jnp.asarray(np.random.RandomState(0).randint(0, 17, (3, 8, 8, 1)), jnp.uint8)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)
  out = tl.with_mode(model, "eval").apply(variables, images)
  assert out.shape == (3, 10)
  assert str(model).startswith(
      "Serial[\n  Flatten_keep1\n  Branch_out2[\n    Serial\n    AttendAll\n")


@pytest.mark.slow
def test_encoder_decoder_shapes_masks_and_shared_embedding():
  model = Transformer(V, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, **TINY)
  assert (model.n_in, model.n_out) == (2, 2)
  assert str(model).startswith("Serial_in2_out2[\n  Select[0,1,1]_in2_out3\n")
  src, tgt = tokens((2, 5)), tokens((2, 4), seed=1)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), (src, tgt))
  embeddings = [p for p, _ in boxed_leaves(variables["params"]) if "embedding" in str(p)]
  assert len(embeddings) == 1  # output_vocab_size=None shares one embedding
  logits, targets = model.apply(variables, (src, tgt))
  assert logits.shape == (2, 4, V)
  np.testing.assert_array_equal(targets, tgt)
  # Padding the source further changes nothing: pads are masked out of the attention.
  padded = jnp.pad(src, ((0, 0), (0, 3)))
  np.testing.assert_allclose(model.apply(variables, (padded, tgt))[0], logits, atol=1e-5)
  # The decoder is causal in the targets.
  changed = model.apply(variables, (src, tgt.at[:, 2].set(1 + tgt[:, 2] % (V - 1))))[0]
  np.testing.assert_allclose(changed[:, :3], logits[:, :3], atol=1e-6)
  # A separate output vocabulary gets its own embedding and logits width.
  two = Transformer(V, 7, n_encoder_layers=1, n_decoder_layers=1, **TINY)
  out = jax.eval_shape(lambda: two.apply(two.init(jax.random.PRNGKey(0), (src, tgt % 7)),
                                         (src, tgt % 7), rngs={"dropout": jax.random.PRNGKey(1)}))
  assert out[0].shape == (2, 4, 7)


@pytest.mark.slow
def test_encoder_decoder_with_scanned_layers_runs():
  model = Transformer(V, n_encoder_layers=2, n_decoder_layers=3, scan_layers=True, **TINY)
  src, tgt = tokens((2, 5)), tokens((2, 4), seed=1)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), (src, tgt))
  assert "ScanLayers_2_in2_out2[\n    EncoderBlock_in2_out2[" in str(model)
  assert "ScanLayers_3_in3_out3[\n    EncoderDecoderBlock_in3_out3[" in str(model)
  logits, _ = model.apply(variables, (src, tgt), rngs={"dropout": jax.random.PRNGKey(1)})
  assert logits.shape == (2, 4, V)


def test_invalid_arguments_are_reported():
  with pytest.raises(ValueError, match="divisible"):
    TransformerLM(V, d_model=10, n_heads=3)
  with pytest.raises(ValueError, match="dropout"):
    TransformerLM(V, dropout=1.5)


def test_errors_inside_scanned_blocks_name_the_path_and_origin():
  from declax.models.blocks import ScanLayers
  from declax.models.transformer import DecoderBlock

  block = DecoderBlock(8, 16, 2, 0.0, 0.0, (), tl.Relu, "train", 32)
  scanned = ScanLayers(block, n_layers=3)
  with pytest.raises(tl.LayerError) as info:
    jax.eval_shape(scanned.init, jax.random.PRNGKey(0), jnp.ones((2, 5, 6)))
  message = str(info.value)
  assert message.startswith("ScanLayers_3[layer] > DecoderBlock[0] > Residual[1] > "
                            "CausalAttention: AssertionError")
  assert re.search(r"ScanLayers_3 +created at \S*test_transformer\.py:\d+", message)
  assert "DecoderBlock     created at " in message and "f32[2,5,6]" in message
  with pytest.raises(ValueError, match="n_in == n_out"):
    ScanLayers(tl.Dup(), n_layers=2)
