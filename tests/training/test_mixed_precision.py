"""Mixed precision as one config key (`config.dtype`): parameters float32, compute in the
policy's dtype, logits and losses float32; a bfloat16 run's loss tracks float32's."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax.training import default_config, from_config
from declax.training.config_schema import resolve_config

LM = dict(name="TransformerLM", vocab_size=16, d_model=32, d_ff=64, n_layers=2, n_heads=2,
          max_len=16, dropout=0.0)


def _config(dtype: str | None, model: dict = LM):
  config = default_config.get_config()
  config.model = dict(model)
  if dtype is not None:
    config.dtype = dtype
  return config


def _counting_batches(n: int, seed: int = 0, batch: int = 8, length: int = 16, vocab: int = 16):
  """Sequences `start, start + step, ...` (mod vocab): learnable from the first two tokens."""
  rng = np.random.default_rng(seed)
  for _ in range(n):
    start = rng.integers(0, vocab, (batch, 1))
    step = rng.integers(1, 4, (batch, 1))
    yield jnp.asarray((start + step * np.arange(length)) % vocab, jnp.int32)


def test_default_is_float32_and_models_get_the_policy_dtype():
  assert default_config.get_config().dtype == "float32"
  float32 = from_config.build_model(_config(None))
  assert "Float32Logits" not in str(float32)  # float32 models are unchanged
  bf16 = from_config.build_model(_config("bfloat16"))
  assert "Float32Logits" in str(bf16)
  # config.model.dtype, when a config sets it, wins over config.dtype
  explicit = from_config.build_model(_config("bfloat16", {**LM, "dtype": "float32"}))
  assert "Float32Logits" not in str(explicit)


@pytest.mark.parametrize("model, inputs", [
    (dict(name="MLP", layer_widths=(8,), n_classes=3), jnp.ones((2, 4, 4, 1))),
    (dict(name="CNN", filters=(4,), hidden=(8,), n_classes=3), jnp.ones((2, 8, 8, 1))),
    (dict(name="RNNLM", vocab_size=16, d_model=8, n_layers=1, dropout=0.0),
     jnp.ones((2, 5), jnp.int32)),
    (dict(name="TransformerEncoder", vocab_size=16, n_classes=3, d_model=16, d_ff=16,
          n_layers=1, n_heads=2, max_len=8, dropout=0.0), jnp.ones((2, 8), jnp.int32)),
    (dict(name="WideResnet", n_blocks=1, widen_factor=1, n_output_classes=3),
     jnp.ones((2, 8, 8, 3))),
])
@pytest.mark.slow
def test_every_model_family_computes_in_bf16_with_float32_params_and_outputs(model, inputs):
  net = from_config.build_model(_config("bfloat16", model), mode="eval")
  variables = jax.jit(net.init)(jax.random.PRNGKey(0), inputs)
  floats = [leaf.dtype for leaf in jax.tree.leaves(nn.unbox(variables))
            if jnp.issubdtype(leaf.dtype, jnp.floating)]  # (BatchNorm also keeps a counter)
  assert set(floats) == {jnp.dtype("float32")}
  assert net.apply(variables, inputs).dtype == jnp.float32
  assert "bf16[" in tl.summary(net, inputs)  # the hidden activations are bfloat16


@pytest.mark.slow  # two 50-step runs of a tiny TransformerLM (~10 s on 2 cores)
def test_bfloat16_loss_tracks_float32_and_params_stay_float32():
  loss_layer = tl.WeightedCategoryCrossEntropy()
  tokens = jnp.zeros((8, 16), jnp.int32)
  runs = {}
  for dtype in ("float32", "bfloat16"):
    config = resolve_config({**_config(dtype).to_dict(), "data": {"name": "unused"},
                             "optimizer": {"name": "adam"},
                             "schedule": {"learning_rate": 3e-3},
                             "train": {"steps": 50, "batch_size": 8, "seed": 0,
                                       "loss": "WeightedCategoryCrossEntropy"}})
    model = from_config.build_model(config)
    tx, _ = from_config.build_optimizer(config)
    params = model.init(jax.random.PRNGKey(0), tokens)["params"]  # the same start for both
    opt_state = tx.init(params)

    def loss_fn(params, batch, model=model):
      logits = model.apply({"params": params}, batch)
      assert logits.dtype == jnp.float32  # (traced once) the policy's float32 logits
      return loss_layer.apply({}, (logits, batch, jnp.ones(batch.shape)))

    @jax.jit
    def step(params, opt_state, batch, tx=tx, loss_fn=loss_fn):
      loss, grads = jax.value_and_grad(loss_fn)(params, batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for batch in _counting_batches(50):
      params, opt_state, loss = step(params, opt_state, batch)
      assert loss.dtype == jnp.float32
      losses.append(float(loss))
    assert {leaf.dtype for leaf in jax.tree.leaves(nn.unbox(params))} == {jnp.dtype("float32")}
    runs[dtype] = np.asarray(losses)
  f32, bf16 = runs["float32"], runs["bfloat16"]
  assert f32[-1] < 0.8 * f32[0]  # it learns, so "tracking" means something
  logged = np.arange(0, 50, 10).tolist() + [49]
  np.testing.assert_allclose(bf16[logged], f32[logged], rtol=0.05)


def test_command_line_overrides_of_dtype_and_mesh_dcn():
  """`--config.dtype=bfloat16 --config.mesh.dcn.data=2` work on any config built from the base
  (the keys exist there), and the resolved config keeps them."""
  import os

  from absl import flags
  from ml_collections import config_flags

  from declax import sharding
  from declax.training.config_schema import to_dict

  path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "pysrc_lm.py")
  argv = ["train", f"--config={path}", "--config.dtype=bfloat16", "--config.mesh.dcn.data=2"]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=values, sys_argv=argv)
  values(argv)
  resolved = resolve_config(values.config)
  assert resolved.dtype == "bfloat16"
  assert to_dict(resolved.mesh)["dcn"] == {"data": 2, "fsdp": 1, "tensor": 1}
  assert "Float32Logits" in str(from_config.build_model(resolved))
  # one process on CPU is one slice: two slices are refused by name, all-ones is the plain mesh
  with pytest.raises(sharding.ShardingError, match="config.mesh.dcn"):
    sharding.mesh_from_config(to_dict(resolved.mesh))
  base = to_dict(default_config.get_config().mesh)
  assert sharding.mesh_from_config(base).shape == sharding.mesh_from_config({"data": -1}).shape
