"""MetricsBuffer: chunks fetched lazily, every step's loss checked."""

import jax.numpy as jnp
import pytest

from declax.training.reporting import MetricsBuffer, NonFiniteLossError
from declax.training.step import TrainMetrics


def _metrics(loss, lr=0.1):
  return TrainMetrics.single_from_model_output(loss=jnp.float32(loss), grad_norm=jnp.float32(1),
                                               learning_rate=jnp.float32(lr))


def test_due_chunks_and_merged_values():
  buffer = MetricsBuffer()
  buffer.add(1, _metrics(1.0, lr=0.1))
  buffer.add(2, _metrics(3.0, lr=0.2))
  assert not buffer.has_due and buffer.take_due() is None
  buffer.mark()
  buffer.add(3, _metrics(5.0))
  step, values = buffer.take_due()
  assert step == 2 and values == pytest.approx({"loss": 2.0, "grad_norm": 1.0,
                                                "learning_rate": 0.2})
  buffer.check()  # fetches step 3 but keeps it pending
  assert buffer.take_all()[0] == 3
  assert list(buffer.losses) == [
      (1, 1.0), (2, 3.0), (3, 5.0)]


def test_non_finite_loss_names_the_first_bad_step():
  buffer = MetricsBuffer()
  for step, loss in [(1, 1.0), (2, float("inf")), (3, float("nan"))]:
    buffer.add(step, _metrics(loss))
  with pytest.raises(NonFiniteLossError, match="loss is inf at step 2") as info:
    buffer.check()
  assert info.value.step == 2 and "no checkpoint was saved" in str(info.value)


def test_check_then_more_steps_then_report():
  buffer = MetricsBuffer()
  buffer.add(1, _metrics(1.0))
  buffer.check()
  buffer.add(2, _metrics(2.0))
  buffer.check()
  buffer.add(3, _metrics(6.0, lr=0.3))
  step, values = buffer.take_all()
  assert step == 3 and values["loss"] == pytest.approx(3.0) and values["learning_rate"] == (
      pytest.approx(0.3))
  assert list(buffer.losses) == [(1, 1.0), (2, 2.0), (3, 6.0)]
