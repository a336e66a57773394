"""Training metrics: summed on the device in constant memory, NaN reported at its exact step."""

import jax
import jax.numpy as jnp
import optax
import pytest

import declax.layers as tl
from declax.training import Loop, TrainTask
from declax.training.callbacks import TrainingStepCallback
from declax.training.metric_writers import MetricWriter
from declax.training.reporting import MetricsBuffer, NonFiniteLossError, accumulate
from declax.training.step import TrainMetrics
from tests.training.training_utils import ArrayBatches, tiny_classifier

_accumulate = jax.jit(accumulate, donate_argnums=0)


def _metrics(loss, lr=0.1):
  return TrainMetrics.single_from_model_output(loss=jnp.float32(loss), grad_norm=jnp.float32(1),
                                               learning_rate=jnp.float32(lr))


def _steps(buffer, losses, first=1, lr=0.1):
  for step, loss in enumerate(losses, first):
    buffer.running = _accumulate(buffer.running, step, _metrics(loss, lr))
    buffer.add(step)


def test_due_intervals_and_merged_values():
  buffer = MetricsBuffer(TrainMetrics)
  _steps(buffer, [1.0, 3.0], lr=0.2)
  assert not buffer.has_due and buffer.take_due() is None
  buffer.mark()
  _steps(buffer, [5.0], first=3)
  step, values = buffer.take_due()
  assert step == 2 and values == pytest.approx({"loss": 2.0, "grad_norm": 1.0,
                                                "learning_rate": 0.2})
  buffer.check()  # fetches step 3 but keeps it pending
  assert buffer.take_all() == (3, pytest.approx({"loss": 5.0, "grad_norm": 1.0,
                                                 "learning_rate": 0.1}))
  assert list(buffer.losses) == [(2, 2.0), (3, 5.0)]


def test_non_finite_loss_names_the_first_bad_step():
  buffer = MetricsBuffer(TrainMetrics)
  _steps(buffer, [1.0, float("inf"), float("nan"), 2.0])
  with pytest.raises(NonFiniteLossError, match="loss is inf at step 2") as info:
    buffer.check()
  assert info.value.step == 2 and "no checkpoint was saved" in str(info.value)


def test_a_bad_step_in_a_set_aside_interval_is_found_first():
  buffer = MetricsBuffer(TrainMetrics)
  _steps(buffer, [1.0, float("nan")])
  buffer.mark()
  _steps(buffer, [float("nan")], first=3)
  with pytest.raises(NonFiniteLossError, match="at step 2"):
    buffer.take_all()


class LiveArrays(TrainingStepCallback):
  """Counts the arrays alive on the devices after every step."""

  def __init__(self, loop):
    super().__init__(loop)
    self.counts = []

  def on_step_end(self, step):
    self.counts.append(len(jax.live_arrays()))


def test_device_memory_stays_flat_over_a_long_log_interval():
  # log_every far beyond the run: before the fix every step's metrics stayed on the device
  # until the log step (hundreds of arrays after 120 steps); now one accumulator does.
  task = TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), optax.sgd(0.1),
                   n_steps_per_checkpoint=None)
  loop = Loop(tiny_classifier(), task, log_every=100_000, callbacks=[LiveArrays], prefetch=0,
              print_summary=False, writers=MetricWriter())
  loop.run(120)
  counts = loop._callbacks[0].counts
  assert len(counts) == 120
  assert max(counts[10:]) - min(counts[10:]) <= 2, counts
  assert [s for s, _ in loop.losses] == [120]
