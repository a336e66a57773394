"""Trax's Loop features: several tasks, callbacks, eval/checkpoint schedules, best checkpoints."""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax.training import EvalTask, Loop, TrainTask
from declax.training.callbacks import EarlyStopping, TrainingStepCallback
from declax.training.config_schema import ConfigError
from declax.training.metric_writers import MetricWriter
from tests.training.training_utils import ArrayBatches


class Recorder(MetricWriter):
  def __init__(self):
    self.scalars = []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))


def body():
  return tl.Serial(tl.Flatten(), tl.Dense(8), tl.Relu())


def head_task(n_classes, seed, every=None, prefix=None):
  head = tl.Serial(tl.Dense(n_classes), tl.LogSoftmax(), tl.CrossEntropyLoss())
  return TrainTask(ArrayBatches(seed=seed, n_classes=n_classes), head, optax.adam(1e-2),
                   n_steps_per_checkpoint=every, export_prefix=prefix)


def classifier_task(every=None, lr=1e-2):
  return TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), optax.sgd(lr),
                   n_steps_per_checkpoint=every)


def classifier():
  return tl.Serial(tl.Flatten(), tl.Dense(3), tl.LogSoftmax())


def eval_task():
  return EvalTask(lambda: ArrayBatches(seed=99), [tl.CrossEntropyLoss(), tl.Accuracy()],
                  metric_names=["loss", "accuracy"], n_eval_batches=1)


class StepLog(TrainingStepCallback):
  """Records the steps it is called at (every other step)."""

  def __init__(self, loop, log):
    super().__init__(loop)
    self.log = log

  def call_at(self, step):
    return step % 2 == 0

  def on_step_begin(self, step):
    self.log.append(("begin", step, self.loop.step))

  def on_step_end(self, step):
    self.log.append(("end", step, self.loop.step))


# ---- Several tasks ------------------------------------------------------------------------------


def _two_task_loop(tmp_path=None, log=None, **kwargs):
  callbacks = [functools.partial(StepLog, log=log)] if log is not None else []
  return Loop(body(), [head_task(3, 0, prefix="three"), head_task(5, 1)], output_dir=tmp_path,
              writers=Recorder(), log_every=2, seed=1, callbacks=callbacks,
              print_summary=False, **kwargs)


@pytest.mark.slow
def test_two_tasks_share_the_body_and_train_their_own_heads():
  loop = _two_task_loop(which_task=lambda step: 0 if step <= 3 else 1)
  heads_before = jax.tree.map(np.asarray, loop.state.heads)
  loop.run(3)  # task 0 only: head 1 untouched, head 0 trained
  heads_mid = jax.tree.map(np.asarray, loop.state.heads)
  np.testing.assert_array_equal(heads_mid["1"]["layers_0"]["kernel"],
                                heads_before["1"]["layers_0"]["kernel"])
  assert not np.allclose(heads_mid["0"]["layers_0"]["kernel"],
                         heads_before["0"]["layers_0"]["kernel"])
  assert heads_mid["0"]["layers_0"]["kernel"].shape == (8, 3)
  assert heads_mid["1"]["layers_0"]["kernel"].shape == (8, 5)
  loop.run(2)  # task 1
  assert not np.allclose(np.asarray(loop.state.heads["1"]["layers_0"]["kernel"]),
                         heads_before["1"]["layers_0"]["kernel"])
  names = {k for _, s in loop._writer.scalars for k in s}
  assert {"train/three/loss", "train/task1/loss"} <= names
  assert [s for s, _ in loop.task_losses(1)] == [4, 5]  # log step 4, end of run 5


def test_which_task_out_of_range_is_an_error():
  loop = _two_task_loop(which_task=lambda step: 2)
  with pytest.raises(ConfigError, match=r"which_task\(1\) returned 2; there are 2 tasks"):
    loop.run(1)


@pytest.mark.slow
def test_resume_with_several_tasks_and_callbacks_is_exact(tmp_path):
  straight_log, first_log, resumed_log = [], [], []
  straight = _two_task_loop(log=straight_log)
  straight.run(6)
  first = _two_task_loop(tmp_path, log=first_log)
  first.run(3)
  first.close()
  resumed = _two_task_loop(tmp_path, log=resumed_log)
  assert resumed.step == 3
  resumed.run(3)
  resumed.close()
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert straight_log == first_log + resumed_log
  assert straight_log == [("begin", 2, 1), ("end", 2, 2), ("begin", 4, 3), ("end", 4, 4),
                          ("begin", 6, 5), ("end", 6, 6)]


# ---- Schedules and checkpoints ------------------------------------------------------------------


def test_eval_at_checkpoint_at_and_permanent_checkpoints(tmp_path):
  loop = Loop(classifier(), classifier_task(), eval_tasks=eval_task(), output_dir=tmp_path,
              writers=Recorder(), print_summary=False, keep_checkpoints=1,
              eval_at=lambda s: s in (2, 5), checkpoint_at=lambda s: s % 2 == 0,
              permanent_checkpoint_at=lambda s: s == 2, async_checkpoints=False)
  loop.run(7)
  loop.close()
  assert [s for s, _ in loop.eval_history] == [2, 5, 7]  # and at the end of the run
  # 2 is permanent, 7 the newest; 4 and 6 were deleted (keep_checkpoints=1).
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [2, 7]


def test_best_checkpoint_is_kept_after_older_ones_are_deleted(tmp_path):
  # Evaluation losses (lower is better) come from a model that first improves, then is pushed
  # away by a huge learning rate: the best evaluation must survive keep_checkpoints=1.
  class Diverge(TrainingStepCallback):
    def on_step_end(self, step):
      if step == 3:
        self.loop.state = self.loop.state.replace(
            params=jax.tree.map(lambda p: p * 50.0, self.loop.state.params))

  loop = Loop(classifier(), classifier_task(lr=0.5), eval_tasks=eval_task(), output_dir=tmp_path,
              writers=Recorder(), print_summary=False, keep_checkpoints=1, eval_every=1,
              checkpoint_low_metric="loss", callbacks=[Diverge], async_checkpoints=False)
  loop.run(6)
  losses = {s: r["eval/loss"] for s, r in loop.eval_history}
  best = min(losses, key=losses.get)
  assert best <= 3 < 6
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [best, 6]
  assert loop.checkpointer.best_step() == best
  loop.close()


def test_unknown_best_metric_names_the_choices():
  with pytest.raises(ConfigError, match="did you mean eval/accuracy"):  # before training
    Loop(classifier(), classifier_task(), eval_tasks=eval_task(), writers=Recorder(),
         print_summary=False, checkpoint_high_metric="acuracy")


# ---- Early stopping -----------------------------------------------------------------------------


def test_early_stopping_ends_the_run_and_saves(tmp_path):
  stop = functools.partial(EarlyStopping, metric="eval/loss", patience=2, min_delta=1e9)
  loop = Loop(classifier(), classifier_task(), eval_tasks=eval_task(), output_dir=tmp_path,
              writers=Recorder(), print_summary=False, eval_every=2, callbacks=[stop])
  loop.run(20)
  loop.close()
  # Evaluations at 2 (the first: the best so far), 4 and 6 (no improvement of 1e9): stop.
  assert loop.stopped_early and loop.step == 6
  assert [s for s, _ in loop.eval_history] == [2, 4, 6]
  assert "6" in os.listdir(tmp_path / "checkpoints")


def test_bad_feature_arguments_are_config_errors():
  with pytest.raises(ConfigError, match="not both"):
    Loop(classifier(), classifier_task(), checkpoint_low_metric="loss",
         checkpoint_high_metric="accuracy")
  with pytest.raises(ConfigError, match="profile_steps needs an output_dir"):
    Loop(classifier(), classifier_task(), profile_steps=(1, 2), writers=Recorder(),
         print_summary=False)
  with pytest.raises(ConfigError, match="mode must be 'min' or 'max'"):
    EarlyStopping(None, mode="lowest")
  from declax.training.optimizers import ema_params

  with pytest.raises(ConfigError, match=r"ema_decay must be in \[0, 1\), got 1.5"):
    ema_params(1.5)
