"""Bad mixed-precision and attention settings (catalogue entries A*): reported before anything is
trained, naming the config key or layer argument and the values that work."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import declax.layers as tl
from declax import registry
from declax.models import ReformerLM
from declax.models.reformer import ReformerConfigError
from declax.training import default_config, from_config
from declax.training.config_schema import ConfigError
from tests.reliability.catalogue import CATALOGUE


def _config(dtype: str, model: dict):
  config = default_config.get_config()
  config.model = model
  config.dtype = dtype
  return config


def test_A1_unknown_config_dtype():
  config = _config("bf16", dict(name="MLP", layer_widths=(4,), n_classes=2))
  with pytest.raises(ConfigError) as info:
    from_config.build_model(config)
  assert CATALOGUE["A1"] in str(info.value)


def test_A2_config_dtype_for_a_model_without_dtype():
  def NoDtypeNet(n_classes: int = 2, mode: str = "train"):  # noqa: N802 (a model factory)
    return tl.Serial(tl.Flatten(), tl.Dense(n_classes))

  registry.MODELS.register(NoDtypeNet, overwrite=True)
  config = _config("bfloat16", dict(name="NoDtypeNet"))
  with pytest.raises(ConfigError) as info:
    from_config.build_model(config)
  assert CATALOGUE["A2"] in str(info.value)
  config.dtype = "float32"  # the fix the message names
  assert from_config.build_model(config) is not None


def test_A4_reformer_dtype_with_an_attention_type_without_dtype():
  class NoDtypeAttention(tl.Layer):  # a plain attention layer's arguments, but no dtype
    d_model: int = 16
    n_heads: int = 1
    dropout: float = 0.0
    mode: str = "train"

    def forward(self, x):
      return x

  with pytest.raises(ReformerConfigError) as info:
    ReformerLM(32, d_model=16, d_ff=32, n_layers=1, n_heads=2, max_len=16,
               attention_type=NoDtypeAttention, dtype="bfloat16")
  assert CATALOGUE["A4"] in str(info.value)
  assert ReformerLM(32, d_model=16, d_ff=32, n_layers=1, n_heads=2, max_len=16,
                    attention_type=NoDtypeAttention) is not None  # the fix: dtype=None


def test_A3_unknown_attention_implementation():
  layer = tl.CausalAttention(8, n_heads=2, implementation="flash")
  with pytest.raises(ValueError) as info:
    layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 8)))
  assert CATALOGUE["A3"] in str(info.value)
