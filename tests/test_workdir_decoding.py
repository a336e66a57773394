"""sample_from_workdir / scripts/sample.py: decoding through the work directory's tokenizer, a
vocabulary that does not match the checkpoint, and a request beyond the model's context."""

import os

import numpy as np
import pytest

import declax
from declax import registry
from declax.data import tokenizers
from declax.decoding import ContextLengthError
from declax.training import Loop, TrainTask, default_config
from declax.training.config_schema import resolve_config
from declax.training.from_config import (
    build_model,
    build_optimizer,
    sample_from_workdir,
    write_config,
)
from declax.workdir_decoding import VocabularyMismatchError
from tests.reliability.catalogue import CATALOGUE


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A byte-level TransformerLM trained for one step (no tokenizer file: bytes)."""
  path = str(tmp_path_factory.mktemp("run"))
  config = default_config.get_config()
  config.model = dict(name="TransformerLM", vocab_size=256, d_model=16, d_ff=32, n_layers=1,
                      n_heads=2, max_len=32, dropout=0.0)
  config.data.name = "declax_pysrc"
  config.optimizer.name = "adam"
  config.schedule.learning_rate = 1e-3
  config.train.update(steps=1, batch_size=2, seed=0, loss="WeightedCategoryCrossEntropy")
  config = resolve_config(config)
  tx, _ = build_optimizer(config)
  x = np.frombuffer(b"def f(x):\n  return x\n" * 2, np.uint8).astype(np.int32)[:32]
  batch = (np.stack([x, x]), np.stack([x, x]), np.ones((2, 32), np.float32))
  task = TrainTask(iter([batch] * 3), registry.get_layer(config.train.loss), tx)
  loop = Loop(build_model(config), task, output_dir=path, print_summary=False)
  loop.run(1)
  loop.close()
  write_config(config, path)
  return path


@pytest.mark.slow
def test_byte_workdir_decodes_and_checks_vocabulary_and_context(workdir):
  texts = sample_from_workdir(workdir, "def ", max_length=8, temperature=0.0)
  assert len(texts) == 1 and texts[0].startswith("def ")
  # A request beyond the context (32) names both numbers instead of being cut.
  with pytest.raises(ContextLengthError, match=r"needs 44 positions.*prompt of 4 .*is 32"):
    sample_from_workdir(workdir, "def ", max_length=40)
  # A tokenizer of another size than the checkpoint's vocabulary.
  tokenizers.CharTokenizer.train(["hello world"] * 3, pad_to_multiple=128).save(workdir)
  try:
    with pytest.raises(VocabularyMismatchError,
                       match=r"vocab_size 128 .*checkpoint's model has a vocabulary of 256") as e:
      sample_from_workdir(workdir, "def ", max_length=4)
    assert CATALOGUE["TX12"] in str(e.value)
    assert isinstance(e.value, declax.DeclaxError)
  finally:
    os.remove(os.path.join(workdir, tokenizers.TOKENIZER_FILE))
