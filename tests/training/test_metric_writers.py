"""Metric writers: console line, JSON lines, TensorBoard event files (no TensorFlow)."""

import io
import json
import os
import struct
import sys

import numpy as np

from declax.training.metric_writers import (
    ConsoleWriter,
    JsonlWriter,
    MetricWriter,
    MultiWriter,
    TensorBoardWriter,
    create_default_writer,
)


def test_console_progress_line():
  out = io.StringIO()
  writer = ConsoleWriter(out, total_steps=1000)
  writer.write_scalars(100, {"train/loss": 0.31234, "train/learning_rate": 1e-4,
                             "steps_per_sec": 412.34, "examples_per_sec": 52780.0,
                             "eta_seconds": 2.2, "eval/accuracy": np.float32(0.5)})
  assert out.getvalue() == ("step 100/1000 | loss 0.3123 | learning_rate 1.000e-04 | "
                            "412.3 steps/s | 52,780 ex/s | ETA 0:00:02 | eval/accuracy 0.5000\n")
  writer.write_texts(0, {"model_summary": "table"})
  assert "model_summary:\ntable" in out.getvalue()


def test_jsonl_lines_and_non_finite_values(tmp_path):
  path = tmp_path / "sub" / "metrics.jsonl"
  writer = JsonlWriter(path)
  writer.write_scalars(1, {"loss": np.float32(0.5), "n": 3})
  writer.write_scalars(2, {"loss": float("nan")})
  writer.write_hparams({"lr": 0.1})
  # Written through without waiting for close (one flush per line).
  lines = [json.loads(line) for line in open(path)]
  assert lines == [{"step": 1, "loss": 0.5, "n": 3}, {"step": 2, "loss": "nan"}]
  assert json.load(open(tmp_path / "sub" / "hparams.json")) == {"lr": 0.1}
  writer.close()


def _read_events(directory):
  """Scalars from TensorBoard event files (TFRecord framing), parsed with tensorboardX's protos."""
  from tensorboardX.proto import event_pb2

  scalars = []
  for name in sorted(os.listdir(directory)):
    data = open(os.path.join(directory, name), "rb").read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.append((event.step, value.tag, round(value.simple_value, 4)))
  return scalars


def test_tensorboard_event_files_without_tensorflow(tmp_path):
  writer = TensorBoardWriter(tmp_path)
  writer.write_scalars(0, {"loss": 1.0})
  writer.write_scalars(1, {"loss": 0.5})
  writer.close()
  assert _read_events(tmp_path) == [(0, "loss", 1.0), (1, "loss", 0.5)]
  assert "tensorflow" not in sys.modules


def test_multi_writer_and_default_writer(tmp_path, capsys):
  class Count(MetricWriter):
    calls = 0

    def write_scalars(self, step, scalars):
      Count.calls += 1

  MultiWriter([Count(), Count()]).write_scalars(0, {"a": 1})
  assert Count.calls == 2
  writer = create_default_writer(tmp_path)
  kinds = sorted(type(w).__name__ for w in writer.writers)
  assert kinds == ["ConsoleWriter", "JsonlWriter", "TensorBoardWriter"]
  writer.write_scalars(3, {"x": 1.5})
  writer.close()
  assert "step 3 | x 1.5000" in capsys.readouterr().out
  assert create_default_writer(tmp_path, process_index=1).writers == []


def test_console_hparams_are_a_short_table_by_section():
  from declax.training.metric_writers import hparams_table

  table = hparams_table({"model.name": "MLP", "model.n_classes": 10, "data.data_dir": None,
                         "train.steps": 3, "optimizer.kwargs.b2": 0.98})
  assert table.splitlines() == ["hparams:", "  model      name=MLP, n_classes=10",
                                "  train      steps=3", "  optimizer  kwargs.b2=0.98"]
  long = hparams_table({f"train.key{i}": i for i in range(40)})
  assert all(len(line) <= 100 for line in long.splitlines())
