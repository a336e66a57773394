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
  assert "Unknown model 'MPL'; did you mean 'MLP'?" in message
  assert "known models:" in message and "CNN" in message
  assert isinstance(info.value, KeyError)


def test_optimizers():
  assert registry.get_optimizer("adamw") is optax.adamw
  assert set(registry.optimizer_names()) >= {"adam", "adamw", "sgd", "momentum", "adafactor",
                                             "lion"}
  registry.register_optimizer(optax.rmsprop, name="rmsprop_test")
  assert registry.get_optimizer("rmsprop_test") is optax.rmsprop
  with pytest.raises(registry.RegistryError, match="did you mean 'adafactor'"):
    registry.get_optimizer("adafactr")


def test_layers():
  assert isinstance(registry.get_layer("CrossEntropyLoss"), tl.CrossEntropyLoss)
  bits = registry.get_layer("BitsPerToken")
  assert bits.n_in == 3
  with pytest.raises(registry.RegistryError, match="did you mean 'Accuracy'"):
    registry.get_layer("Acuracy")


def test_one_registry_api_for_every_kind():
  from declax.data.registry import DATASETS

  for table, name in ((registry.MODELS, "MLP"), (registry.LAYERS, "Accuracy"),
                      (registry.OPTIMIZERS, "adamw"), (DATASETS, "declax_digits")):
    assert isinstance(table, registry.Registry)
    assert name in table and name in table.names()
    assert table.get(name) is not None
    with pytest.raises(registry.RegistryError, match=f"Unknown {table.kind} 'nope'"):
      table.get("nope")


def test_every_declax_error_class_derives_from_declax_error():
  import declax
  from declax import sharding
  from declax.data.offline import DatasetUnavailableError
  from declax.training import checkpoints, config_schema, reporting, workdir

  classes = [sharding.ShardingError, sharding.PeerFailureError, DatasetUnavailableError,
             registry.RegistryError, registry.RegistryArgumentError, config_schema.ConfigError,
             reporting.NonFiniteLossError, reporting.NonFiniteInputError,
             workdir.WorkdirError, workdir.WorkdirLockedError,
             checkpoints.CheckpointMismatchError, checkpoints.CheckpointCorruptedError,
             checkpoints.CheckpointSaveError]
  for cls in classes:
    assert issubclass(cls, declax.DeclaxError), cls
  assert issubclass(registry.RegistryError, KeyError) and issubclass(workdir.WorkdirError, OSError)
