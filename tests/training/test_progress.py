"""Progress: rates and ETA from a fake clock, paused time left out."""

import pytest

from declax.training.progress import Progress


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_rates_eta_and_pauses():
  clock = Clock()
  progress = Progress(total_steps=300, batch_size=10, clock=clock)
  progress.start(0)
  clock.now = 2.0              # the first interval includes compilation: no ETA from it
  assert progress.measure(50) == pytest.approx({"steps_per_sec": 25.0, "examples_per_sec": 250.0})
  clock.now = 3.0
  assert progress.measure(100) == pytest.approx(
      {"steps_per_sec": 50.0, "examples_per_sec": 500.0, "eta_seconds": 4.0})
  with progress.pause():
    clock.now = 10.0          # 8 s of evaluation: not training time
  clock.now = 11.0
  assert progress.measure(200)["steps_per_sec"] == pytest.approx(100.0)
  assert progress.measure(200) == {}


def test_measure_without_start_starts():
  progress = Progress(clock=Clock())
  assert progress.measure(5) == {}
