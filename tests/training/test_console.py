"""The console: time-based progress lines, no ETA from the compiling first interval."""

import io

import optax

import declax.layers as tl
from declax.training import ConsoleWriter, Loop, TrainTask
from declax.training import loop as loop_module
from tests.training.training_utils import ArrayBatches, tiny_classifier


def test_progress_lines_come_by_time_as_well_as_by_steps(monkeypatch):
  monkeypatch.setattr(loop_module, "LOG_SECONDS", 0.0)  # every step is "10 s later"
  stream = io.StringIO()
  loop = Loop(tiny_classifier(), TrainTask(ArrayBatches(), tl.CrossEntropyLoss(),
                                           optax.adamw(3e-3)),
              output_dir=None, log_every=100, writers=ConsoleWriter(stream),
              print_summary=False)
  loop.run(3)
  lines = [line for line in stream.getvalue().splitlines() if "| loss" in line]
  assert [line.split(" |")[0] for line in lines] == ["step 1/3", "step 2/3", "step 3/3"]
  assert "ETA" not in lines[0] and "ETA" in lines[-1]  # the first interval compiled
  assert "learning_rate" not in stream.getvalue() and "nan" not in stream.getvalue()
