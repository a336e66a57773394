"""Labels and token ids out of range at a later step (catalogue R28b-R28d, issue 17): the train and
eval steps check every batch in jit, and the Loop stops at the exact step. Before, only the first
batch was checked and a later bad label trained on garbage."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.training import EvalTask, Loop, NonFiniteLossError, TrainTask, make_optimizer
from declax.training.config_schema import ConfigError
from declax.training.id_checks import IdChecks, IdRangeError
from declax.training.metric_writers import MultiWriter
from declax.training.step import run_model
from tests.reliability.catalogue import CATALOGUE
from tests.training.training_utils import ArrayBatches, tiny_classifier


def expect(entry: str, error: BaseException) -> str:
  text = str(error)
  assert CATALOGUE[entry] in text, f"{entry}: {CATALOGUE[entry]!r} not in\n{text}"
  return text


class BadAt(ArrayBatches):
  """`ArrayBatches` whose batch number `at` (counting from 1) holds the label `label`."""

  def __init__(self, at: int, label: int = 3, **kwargs):
    super().__init__(**kwargs)
    self.at, self.label = at, label

  def __next__(self):
    x, y, *rest = super().__next__()
    if self.index == self.at:
      y = y.copy()
      y[2] = self.label
    return (x, y, *rest)


def make_loop(output_dir=None, data=None, model=None, log_every=1, **kwargs) -> Loop:
  task = TrainTask(data if data is not None else ArrayBatches(), tl.CrossEntropyLoss(),
                   make_optimizer("adam", 1e-2), n_steps_per_checkpoint=2)
  return Loop(model or tiny_classifier(), task, output_dir=output_dir, writers=MultiWriter([]),
              log_every=log_every, keep_checkpoints=5, print_summary=False, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("log_every", [1, 10])
def test_R28b_a_label_beyond_the_classes_at_step_5_stops_there(tmp_path, log_every):
  loop = make_loop(tmp_path, BadAt(5), log_every=log_every)
  with pytest.raises(IdRangeError) as info:
    loop.run(8)
  text = expect("R28b", info.value)
  assert "at step 5" in text and "the last good checkpoint is step 4" in text
  assert isinstance(info.value, ConfigError) and info.value.value == 3
  loop.close()
  steps = sorted(int(n.name) for n in (tmp_path / "checkpoints").iterdir() if n.name.isdigit())
  assert steps == [2, 4]  # nothing from step 5 on
  again = make_loop(tmp_path, ArrayBatches())  # the last checkpoint before it loads and trains
  assert again.step == 4
  again.run(2)
  assert again.step == 6
  again.close()


class Tokens:
  """Endless `(ids, ids)` language-model batches over `vocab` ids; batch `at` holds `bad`."""

  def __init__(self, at: int, bad: int, vocab: int = 10):
    self.at, self.bad, self.vocab, self.index = at, bad, vocab, 0

  def __iter__(self):
    return self

  def __next__(self):
    self.index += 1
    ids = (np.arange(24, dtype=np.int32).reshape(4, 6) + self.index) % self.vocab
    inputs = ids.copy()
    if self.index == self.at:
      inputs[1, 2] = self.bad
    return inputs, ids


def lm(vocab: int = 10) -> tl.Layer:
  return tl.Serial(tl.Embedding(vocab, 4), tl.Dense(vocab), tl.LogSoftmax())


@pytest.mark.slow
@pytest.mark.parametrize("bad", [12, -1])
def test_R28c_a_token_id_beyond_the_vocabulary_at_step_3(bad):
  loop = make_loop(data=Tokens(at=3, bad=bad), model=lm(), log_every=50)
  with pytest.raises(IdRangeError) as info:
    loop.run(5)
  text = expect("R28c", info.value)
  assert f"inputs (token ids read by Embedding_10_4) hold {bad} at step 3" in text
  assert ("at least 13" in text) == (bad == 12)
  loop.close()


@pytest.mark.slow
def test_R28d_a_label_beyond_the_classes_in_the_second_eval_batch():
  class EvalData:
    def __iter__(self):
      return iter([next(ArrayBatches(seed=1)), next(BadAt(1, label=7, seed=2))])

  loop = make_loop(eval_tasks=[EvalTask(EvalData, [tl.Accuracy()], n_eval_batches=2)])
  with pytest.raises(IdRangeError) as info:
    loop.evaluate()
  text = expect("R28d", info.value)
  assert "at least 8" in text
  loop.close()


@pytest.mark.slow
def test_check_ids_false_trains_on_as_before():
  loop = make_loop(data=BadAt(2), check_ids=False)
  loop.run(3)  # the bad label one-hot encodes to zeros: a finite loss, nothing raised
  assert loop.step == 3
  loop.close()


@pytest.mark.slow
def test_a_bad_id_wins_over_the_nan_loss_it_causes_at_the_same_step():
  model = tl.Serial(tl.Embedding(10, 4, out_of_range="fill"), tl.Dense(10), tl.LogSoftmax())
  loop = make_loop(data=Tokens(at=2, bad=11), model=model)
  with pytest.raises(IdRangeError, match="at step 2"):
    loop.run(3)
  loop.close()
  loop = make_loop(data=Tokens(at=2, bad=11), model=model, check_ids=False)
  with pytest.raises(NonFiniteLossError, match="at step 2"):
    loop.run(3)
  loop.close()


def test_the_checks_in_jit_find_the_first_bad_id():
  model = lm()
  batch = (jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3), jnp.int32))
  variables = model.init(jax.random.key(0), batch[0])
  checks = IdChecks()

  @jax.jit
  def step(batch):
    with checks.embeddings():
      stack, _ = run_model(model, variables, batch)
    checks.labels(stack[0], batch, 1)
    return checks.first(7)

  assert int(step(batch).step) == -1
  found = step((batch[0], batch[1].at[0, 0].set(10)))
  assert (int(found.step), int(found.value), int(found.limit)) == (7, 10, 10)
  assert checks.sites[int(found.check)].item == "targets (batch item 1)"
  found = step((batch[0].at[1, 1].set(-4), batch[1].at[0, 0].set(10)))  # the input comes first
  assert int(found.value) == -4 and "Embedding_10_4" in checks.sites[int(found.check)].item


def test_a_single_output_takes_binary_labels():
  model = tl.Serial(tl.Flatten(), tl.Dense(1))
  with pytest.raises(ConfigError, match=r"single output, a binary classifier .*\[0, 2\)"):
    make_loop(data=ArrayBatches(n_classes=3), model=model)
