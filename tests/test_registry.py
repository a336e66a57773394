"""The registry: models, optimizers and layers by name, with helpful errors."""

import optax
import pytest

import declax.layers as tl
from declax import registry
from declax.models import MLP


def test_get_model_from_declax_models():
  model = registry.get_model("MLP", layer_widths=(4,), n_classes=2)
  assert str(model) == str(MLP(layer_widths=(4,), n_classes=2))
  assert "MLP" in registry.model_names() and "CNN" in registry.model_names()


def test_register_model_decorator_and_precedence():
  @registry.register_model(name="TinyRegistryNet")
  def tiny(n_classes=3, mode="train"):
    return tl.Serial(tl.Dense(n_classes), tl.LogSoftmax())

  assert str(registry.get_model("TinyRegistryNet", n_classes=4)) == str(tiny(4))
  assert "TinyRegistryNet" in registry.model_names()
  with pytest.raises(registry.RegistryError, match="already registered"):
    registry.register_model(lambda: None, name="TinyRegistryNet")
  registry.register_model(lambda: "replaced", name="TinyRegistryNet", overwrite=True)
  assert registry.get_model("TinyRegistryNet") == "replaced"


def test_unknown_model_lists_known_names_and_the_closest():
  with pytest.raises(registry.RegistryError) as info:
    registry.get_model("MPL")
  message = str(info.value)
  assert "Unknown model 'MPL'. Did you mean 'MLP'?" in message
  assert "Known models:" in message and "CNN" in message
  assert isinstance(info.value, KeyError)


def test_optimizers():
  assert registry.get_optimizer("adamw") is optax.adamw
  assert set(registry.optimizer_names()) >= {"adam", "adamw", "sgd", "momentum", "adafactor",
                                             "lion"}
  registry.register_optimizer(optax.rmsprop, name="rmsprop_test")
  assert registry.get_optimizer("rmsprop_test") is optax.rmsprop
  with pytest.raises(registry.RegistryError, match="Did you mean 'adafactor'"):
    registry.get_optimizer("adafactr")


def test_layers():
  assert isinstance(registry.get_layer("CrossEntropyLoss"), tl.CrossEntropyLoss)
  bits = registry.get_layer("BitsPerToken")
  assert bits.n_in == 3
  with pytest.raises(registry.RegistryError, match="Did you mean 'Accuracy'"):
    registry.get_layer("Acuracy")
