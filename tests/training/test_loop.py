"""Loop: training, evaluation, files, exact resume, preemption, NaN losses, bad checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax.training import (
  CheckpointMismatchError,
  EvalTask,
  Loop,
  NonFiniteLossError,
  TrainTask,
  make_optimizer,
  make_schedule,
)
from declax.training.metric_writers import MetricWriter
from tests.training.training_utils import ArrayBatches, tiny_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _log_only_every_log_every_steps(monkeypatch):
  """These tests count log intervals: the at-least-every-10-s progress line (tested in
  test_console.py) would add one after a first step that compiles for over 10 s under load."""
  import declax.training.loop as loop_module

  monkeypatch.setattr(loop_module, "LOG_SECONDS", float("inf"))


class Recorder(MetricWriter):
  def __init__(self):
    self.scalars, self.texts = [], []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))

  def write_texts(self, step, texts):
    self.texts.append((step, dict(texts)))


def _train_task(data=None, lr=1e-2, accum=1, every=None, schedule=True):
  sched = make_schedule("warmup_cosine", learning_rate=lr, warmup_steps=2,
                        decay_steps=50) if schedule else lr
  tx = make_optimizer("adamw", sched, weight_decay=1e-3, clip_norm=1.0, grad_accum_steps=accum)
  return TrainTask(data if data is not None else ArrayBatches(), tl.CrossEntropyLoss(), tx,
                   n_steps_per_checkpoint=every)


def _eval_task():
  return EvalTask(lambda: ArrayBatches(seed=99), [tl.CrossEntropyLoss(), tl.Accuracy()],
                  metric_names=["loss", "accuracy"], n_eval_batches=2)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


# ------------------------------------------------------------------------------------------------


def test_run_trains_evaluates_and_writes_files(tmp_path):
  recorder = Recorder()
  loop = Loop(tiny_classifier(), _train_task(every=5), eval_tasks=[_eval_task()],
              output_dir=tmp_path, log_every=2, writers=recorder)
  loop.run(10)
  assert loop.step == 10 and int(loop.state.step) == 10
  assert [s for s, _ in loop.losses] == [2, 4, 6, 8, 10]  # one per log interval
  assert all(np.isfinite(v) for _, v in loop.losses)
  train_logs = [(s, v) for s, v in recorder.scalars if "train/loss" in v]
  assert [s for s, _ in train_logs] == [2, 4, 6, 8, 10]
  assert {"train/loss", "train/learning_rate", "train/grad_norm", "steps_per_sec",
          "eta_seconds"} <= set(train_logs[-1][1])
  assert [v["train/loss"] for _, v in train_logs] == [v for _, v in loop.losses]
  # Learning rate: the schedule's value at the last update of the interval.
  sched = make_schedule("warmup_cosine", learning_rate=1e-2, warmup_steps=2, decay_steps=50)
  np.testing.assert_allclose(train_logs[-1][1]["train/learning_rate"], sched(9), rtol=1e-5)
  evals = [(s, v) for s, v in recorder.scalars if "eval/accuracy" in v]
  assert [s for s, _ in evals] == [5, 10]  # eval_every defaults to the checkpoint interval
  assert loop.eval_history[-1][0] == 10
  assert "model_summary" in recorder.texts[0][1]
  assert "Total parameters" in recorder.texts[0][1]["model_summary"]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "5"]
  assert (tmp_path / "model_summary.txt").exists()
  loop.close()


def test_eval_every_and_default_writers(tmp_path, capsys):
  loop = Loop(tiny_classifier(), _train_task(every=None), eval_tasks=[_eval_task()],
              output_dir=tmp_path, eval_every=3, log_every=3)
  loop.run(6)
  loop.close()
  steps = [s for s, _ in loop.eval_history]
  assert steps == [3, 6]
  out = capsys.readouterr().out
  assert "step 3/6 | loss" in out and "steps/s" in out and "ETA" in out
  assert "eval/accuracy" in out
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in records if "train/loss" in r] == [3, 6]
  assert [r["step"] for r in records if "eval/loss" in r] == [3, 6]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["6"]  # only at the end of the run


def test_eval_model_defaults_to_eval_mode_with_shared_params():
  loop = Loop(tiny_classifier(dropout=0.5), _train_task(), eval_tasks=[_eval_task()],
              writers=Recorder())
  dropouts = [x for x in loop.eval_model.layers if isinstance(x, tl.Dropout)]
  assert [d.mode for d in dropouts] == ["eval"]
  first = loop.evaluate()
  assert loop.evaluate() == first  # deterministic: dropout is off, same batches each time


def test_batch_norm_statistics_are_trained_and_used_in_eval():
  loop = Loop(tiny_classifier(batch_norm=True), _train_task(), eval_tasks=[_eval_task()],
              writers=Recorder())
  before = _leaves(loop.state.model_state["batch_stats"])
  loop.run(3)
  after = _leaves(loop.state.model_state["batch_stats"])
  assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
  assert np.isfinite(loop.evaluate()["eval/loss"])


def test_weights_in_the_batch_are_used():
  data = ArrayBatches(with_weights=True)
  loop = Loop(tiny_classifier(), _train_task(data), writers=Recorder())
  loop.run(2)
  assert np.isfinite(loop.losses[-1][1])


def test_loop_rejects_no_train_task():
  with pytest.raises(ValueError, match="a TrainTask or a non-empty list"):
    Loop(tiny_classifier(), [])


# ---- Exact resume ------------------------------------------------------------------------------


def _resume_pair(tmp_path, n, model_fn, task_fn):
  straight = Loop(model_fn(), task_fn(), writers=Recorder(), log_every=1, seed=3)
  straight.run(2 * n)
  first = Loop(model_fn(), task_fn(), output_dir=tmp_path, writers=Recorder(), log_every=1,
               seed=3)
  first.run(n)
  first.close()
  resumed = Loop(model_fn(), task_fn(), output_dir=tmp_path, writers=Recorder(), log_every=1,
                 seed=3)
  assert resumed.step == n
  resumed.run(n)
  resumed.close()
  return straight, first, resumed


@pytest.mark.slow
def test_resume_gives_identical_losses_and_params(tmp_path):
  # Dropout (RNG), BatchNorm (model_state), an odd split inside gradient accumulation
  # (MultiSteps state) and a shuffled data position must all survive the restart.
  model_fn = lambda: tiny_classifier(dropout=0.3, batch_norm=True)
  task_fn = lambda: _train_task(ArrayBatches(seed=5), accum=2, every=100)
  straight, first, resumed = _resume_pair(tmp_path, 3, model_fn, task_fn)
  assert straight.losses == first.losses + resumed.losses  # bitwise equal floats
  for a, b in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_resume_with_a_declax_data_pipeline(tmp_path):
  from declax.data import make_pipeline

  model_fn = lambda: tl.Serial(tl.Flatten(), tl.Dense(10), tl.LogSoftmax())
  task_fn = lambda: _train_task(make_pipeline("declax_digits", "train", 16, seed=1))
  straight, first, resumed = _resume_pair(tmp_path, 2, model_fn, task_fn)
  assert straight.losses == first.losses + resumed.losses
  for a, b in zip(_leaves(straight.params), _leaves(resumed.params), strict=True):
    np.testing.assert_array_equal(a, b)


def test_mismatched_checkpoint_lists_the_paths(tmp_path):
  loop = Loop(tiny_classifier(), _train_task(), output_dir=tmp_path, writers=Recorder())
  loop.run(1)
  loop.close()
  other = tl.Serial(tl.Flatten(), tl.Dense(16), tl.Relu(), tl.Dense(8), tl.Relu(), tl.Dense(3),
                    tl.LogSoftmax())
  with pytest.raises(CheckpointMismatchError) as info:
    Loop(other, _train_task(), output_dir=tmp_path, writers=Recorder())
  message = str(info.value)
  assert "nothing was restored" in message
  assert "params/layers_5/kernel" in message           # in the model only
  assert "params/layers_1/kernel: float32[16, 8] vs float32[16, 16]" in message
  assert "params/layers_3/kernel" in message
  assert info.value.missing and info.value.mismatched


# ---- Failures and preemption -------------------------------------------------------------------


class NanAfter(ArrayBatches):
  """Batches whose inputs turn to NaN from batch `start` on."""

  def __init__(self, start: int):
    super().__init__()
    self.start = start

  def __next__(self):
    x, y = super().__next__()
    return (x * np.nan if self.index > self.start else x), y


def test_non_finite_loss_stops_with_the_step_and_keeps_the_good_checkpoint(tmp_path):
  loop = Loop(tiny_classifier(), _train_task(NanAfter(5), every=4), output_dir=tmp_path,
              writers=Recorder(), log_every=100)
  with pytest.raises(NonFiniteLossError, match="at step 6") as info:
    loop.run(20)
  assert info.value.step == 6 and info.value.last_checkpoint == 4
  assert "last good checkpoint is step 4" in str(info.value)
  loop.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]


@pytest.mark.slow
def test_sigterm_saves_at_the_current_step_and_returns(tmp_path):
  # The data iterator sends SIGTERM to its own process when batch 6 is read (by the prefetch
  # thread, possibly a step or two ahead): the loop finishes its current step, saves it with
  # the data position of that step (not of the batches read ahead) and returns normally.
  script = textwrap.dedent(f"""
      import os, signal, sys, json
      sys.path.insert(0, {ROOT!r})
      from tests.training.training_utils import ArrayBatches, tiny_classifier
      import declax.layers as tl, optax
      from declax.training import Loop, TrainTask

      class Terminating(ArrayBatches):
        def __next__(self):
          if self.index == 6:
            os.kill(os.getpid(), signal.SIGTERM)
          return super().__next__()

      loop = Loop(tiny_classifier(), TrainTask(Terminating(), tl.CrossEntropyLoss(),
                  optax.adam(1e-2), n_steps_per_checkpoint=1000), output_dir={str(tmp_path)!r},
                  print_summary=False)
      loop.run(1000)
      loop.close()
      print(json.dumps({{"step": loop.step, "preempted": loop.preempted}}))
      sys.exit(0 if loop.preempted else 3)
  """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=240, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  outcome = json.loads(result.stdout.strip().splitlines()[-1])
  step = outcome["step"]
  assert outcome["preempted"] and 1 <= step <= 7
  assert os.listdir(tmp_path / "checkpoints") == [str(step)]
  data = json.load(open(tmp_path / "checkpoints" / str(step) / "data" / "metadata"))
  assert data == {"train": [{"index": step}]}  # one position per process


def test_signal_handler_is_restored_after_run():
  before = signal.getsignal(signal.SIGTERM)
  loop = Loop(tiny_classifier(), _train_task(), writers=Recorder())
  loop.run(1)
  assert signal.getsignal(signal.SIGTERM) is before


def test_optax_optimizer_without_injected_lr_logs_the_task_schedule():
  recorder = Recorder()
  task = TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), optax.sgd(0.1),
                   lr_schedule=lambda step: 0.1 / (1 + step))
  loop = Loop(tiny_classifier(), task, writers=recorder, log_every=2)
  loop.run(2)
  logged = [v for _, v in recorder.scalars if "train/learning_rate" in v][-1]
  np.testing.assert_allclose(logged["train/learning_rate"], 0.1 / 2, rtol=1e-6)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_finite_training_data_is_an_error_naming_the_step(prefetch):
  batches = [next(ArrayBatches()) for _ in range(3)]
  task = TrainTask(iter(batches), tl.CrossEntropyLoss(), optax.sgd(0.1))
  loop = Loop(tiny_classifier(), task, writers=Recorder(), prefetch=prefetch)
  with pytest.raises(ValueError, match="ran out of batches at step 4"):
    loop.run(5)
  loop.close()


def test_close_rewinds_data_read_ahead(tmp_path):
  data = ArrayBatches()
  loop = Loop(tiny_classifier(), _train_task(data), writers=Recorder(), prefetch=3)
  loop.run(2)
  loop.close()
  assert data.index == 2
