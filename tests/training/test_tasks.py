"""TrainTask / EvalTask: peeking, data state, eval iteration."""

import numpy as np
import optax
import pytest

import declax.layers as tl
from declax.training.tasks import EvalTask, TrainTask
from tests.training.training_utils import ArrayBatches


def _gen():
  for i in range(100):
    yield np.full((2, 1), i, np.float32), np.zeros((2,), np.int32)


def test_sample_batch_does_not_consume_a_checkpointable_iterator():
  data = ArrayBatches()
  task = TrainTask(data, tl.CrossEntropyLoss(), optax.sgd(0.1))
  first = task.sample_batch
  np.testing.assert_array_equal(task.next_batch()[0], first[0])
  assert task.data_state() == {"index": 1} and task.data_checkpointable
  task.set_data_state({"index": 0})
  np.testing.assert_array_equal(task.next_batch()[0], first[0])


def test_sample_batch_of_a_plain_generator_is_replayed():
  task = TrainTask(_gen(), tl.CrossEntropyLoss(), optax.sgd(0.1))
  assert float(task.sample_batch[0][0, 0]) == 0
  assert [float(task.next_batch()[0][0, 0]) for _ in range(3)] == [0, 1, 2]
  assert task.data_state() is None and not task.data_checkpointable


def test_train_task_validation():
  with pytest.raises(TypeError, match="optax.GradientTransformation"):
    TrainTask(_gen(), tl.CrossEntropyLoss(), "adam")
  with pytest.raises(ValueError, match="n_steps_per_checkpoint"):
    TrainTask(_gen(), tl.CrossEntropyLoss(), optax.sgd(0.1), n_steps_per_checkpoint=0)


def test_eval_task_from_factory_restarts_every_time():
  task = EvalTask(_gen, [tl.CrossEntropyLoss()], n_eval_batches=2)
  assert task.metric_names == ["CrossEntropyLoss"]
  for _ in range(2):
    assert [float(b[0][0, 0]) for b in task.batches()] == [0, 1]
  everything = EvalTask(lambda: iter(list(_gen())[:3]), [tl.Accuracy()], n_eval_batches=None)
  assert len(list(everything.batches())) == 3


def test_eval_task_from_iterator_continues_and_complains_when_exhausted():
  task = EvalTask(_gen(), [tl.Accuracy()], ["acc"], n_eval_batches=60)
  assert len(list(task.batches())) == 60
  with pytest.raises(ValueError, match="ran out of batches"):
    list(task.batches())


def test_eval_task_validation():
  with pytest.raises(ValueError, match="at least one metric"):
    EvalTask(_gen, [])
  with pytest.raises(ValueError, match="2 metrics but 1 metric_names"):
    EvalTask(_gen, [tl.Accuracy(), tl.CrossEntropyLoss()], ["a"])
  with pytest.raises(ValueError, match="unique"):
    EvalTask(_gen, [tl.Accuracy(), tl.Accuracy()])
