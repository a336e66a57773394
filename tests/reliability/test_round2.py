"""Reliability round 2 (issue 17): runs that lost work, hung or silently did the wrong thing,
and errors that did not name their cause (catalogue entries R*). Each test failed before the
fix."""

from __future__ import annotations

import logging
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.sharding import ShardingError
from declax.training import EvalTask, Loop, NonFiniteLossError, TrainTask, make_optimizer
from declax.training.config_schema import ConfigError
from declax.training.guards import (
  LoopClosedError,
  NonFiniteStateError,
  WorkdirInUseError,
  check_eval_setup,
)
from declax.training.metric_writers import MultiWriter
from tests.reliability.catalogue import CATALOGUE
from tests.training.training_utils import ArrayBatches, tiny_classifier


def expect(entry: str, error: BaseException | str) -> str:
  text = str(error)
  assert CATALOGUE[entry] in text, f"{entry}: {CATALOGUE[entry]!r} not in\n{text}"
  return text


def make_loop(output_dir=None, data=None, model=None, every=2, keep=3, lr=1e-2,
              **kwargs) -> Loop:
  task = TrainTask(data if data is not None else ArrayBatches(), tl.CrossEntropyLoss(),
                   make_optimizer("adam", lr), n_steps_per_checkpoint=every)
  return Loop(model or tiny_classifier(), task, output_dir=output_dir, writers=MultiWriter([]),
              log_every=1, keep_checkpoints=keep, print_summary=False, **kwargs)


def steps(workdir) -> list[int]:
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


# ---- LOSS: the end-of-run evaluation ------------------------------------------------------------


def test_R1_eval_batch_that_does_not_split_over_the_mesh_is_found_up_front():
  mesh = jax.sharding.AbstractMesh((2, 1, 1), ("data", "fsdp", "tensor"))
  task = EvalTask(ArrayBatches(batch_size=45), [tl.CrossEntropyLoss()])
  with pytest.raises(ShardingError) as info:
    check_eval_setup([task], [None], None, mesh, None)
  expect("R1", info.value)


def test_R2_an_eval_metric_that_cannot_run_fails_before_training(tmp_path):
  class WrongTargets(ArrayBatches):
    def __next__(self):
      x, y = super().__next__()
      return x, y[:, None]  # (8, 1): CrossEntropyLoss wants (8,)

  with pytest.raises(ConfigError) as info:
    make_loop(tmp_path, eval_tasks=[EvalTask(WrongTargets(), [tl.CrossEntropyLoss()])])
  expect("R2", info.value)
  assert not os.path.exists(tmp_path / "checkpoints" / "1")


@pytest.mark.parametrize("layers", [dict(dropout=0.5), dict(batch_norm=True)])
def test_R3_train_mode_eval_model_is_refused(layers):
  with pytest.raises(ConfigError) as info:
    make_loop(eval_model=tiny_classifier(**layers),
              eval_tasks=[EvalTask(ArrayBatches(), [tl.CrossEntropyLoss()])])
  expect("R3", info.value)


def test_R4_a_failing_final_evaluation_keeps_the_trained_steps(tmp_path):
  loop = make_loop(tmp_path, every=None, eval_tasks=[EvalTask(ArrayBatches(), [tl.Accuracy()])])
  loop._eval_tasks[0].batches = lambda: iter([])  # breaks after the up-front checks
  with pytest.raises(ConfigError) as info:
    loop.run(3)
  expect("R4", info.value)
  loop.close()
  assert steps(tmp_path) == [3]


# ---- LOSS: "the last good checkpoint" is good ---------------------------------------------------


def test_R5_a_non_finite_or_exploded_state_is_never_saved(tmp_path):
  loop = make_loop(tmp_path)
  loop.run(2)
  good = loop.state
  for scale in (np.inf, 1e38):  # NaN/inf parameters; finite ones whose loss overflows
    with np.errstate(over="ignore"):
      loop.state = good.replace(params=jax.tree.map(lambda x, s=scale: x * s, good.params))
    loop._step = 3
    with pytest.raises(NonFiniteStateError) as info:
      loop.save_checkpoint(wait=True)
    expect("R5", info.value)
    assert steps(tmp_path) == [2]
  loop.close()


def test_R6_a_non_finite_gradient_with_a_finite_loss_stops_the_run(tmp_path):
  nan_grad = tl.Fn("NanGrad", lambda x: x + jnp.sqrt(jnp.abs(x - x)))  # 0 * inf gradient
  model = tl.Serial(tl.Flatten(), tl.Dense(3), nan_grad, tl.LogSoftmax())
  loop = make_loop(tmp_path, model=model)
  with pytest.raises(NonFiniteLossError) as info:
    loop.run(4)
  expect("R6", info.value)
  loop.close()
  assert not os.path.exists(tmp_path / "checkpoints") or steps(tmp_path) == []


# ---- LOSS: signals ------------------------------------------------------------------------------


class Signalling(ArrayBatches):
  def __init__(self, signum, at=3, again=False, **kwargs):
    super().__init__(**kwargs)
    self.signum, self.at, self.again = signum, at, again

  def __next__(self):
    if self.index == self.at:
      os.kill(os.getpid(), self.signum)
      if self.again:
        os.kill(os.getpid(), self.signum)
    return super().__next__()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_R7_sigint_and_sighup_save_like_sigterm(tmp_path, signum):
  loop = make_loop(tmp_path, data=Signalling(signum), every=None, prefetch=0)
  loop.run(50)
  loop.close()
  expect("R7", "Received signal")
  assert loop.preempted and steps(tmp_path) == [loop.step] and loop.step < 50


def test_R7_a_second_ctrl_c_aborts(tmp_path):
  loop = make_loop(tmp_path, data=Signalling(signal.SIGINT, again=True), every=None, prefetch=0)
  with pytest.raises(KeyboardInterrupt):
    loop.run(50)
  loop.close()


def test_R7_a_second_sigterm_after_the_save_is_ignored(tmp_path):
  before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
  try:
    loop = make_loop(tmp_path, data=Signalling(signal.SIGTERM), every=None, prefetch=0)
    loop.run(50)
    os.kill(os.getpid(), signal.SIGTERM)  # with the default handler this would end pytest
    loop.close()
    assert loop.preempted
  finally:
    signal.signal(signal.SIGTERM, before)


# ---- LOSS: keep_checkpoints=0, exceptions during an async save ---------------------------------


def test_R8_keep_checkpoints_0_is_refused(tmp_path):
  with pytest.raises(ConfigError) as info:
    make_loop(tmp_path, keep=0)
  expect("R8", info.value)


def test_R9_an_exception_in_run_finishes_the_pending_save(tmp_path):
  class Failing(ArrayBatches):
    def __next__(self):
      if self.index == 5:
        raise OSError("the data went away")
      return super().__next__()

  loop = make_loop(tmp_path, data=Failing(), every=4, prefetch=0)
  with pytest.raises(OSError):
    loop.run(10)
  expect("R9", "the data went away")
  assert steps(tmp_path) == [4]
  assert not [n for n in os.listdir(tmp_path / "checkpoints") if "tmp" in n]
  loop.close()


# ---- The hang, two loops, run arguments ---------------------------------------------------------


def test_R10_a_closed_loop_refuses_to_run(tmp_path):
  loop = make_loop(tmp_path)
  loop.run(1)
  loop.close()
  with pytest.raises(LoopClosedError) as info:
    loop.run(1)
  expect("R10", info.value)


def test_R11_two_live_loops_on_one_workdir_are_refused(tmp_path):
  first = make_loop(tmp_path)
  with pytest.raises(WorkdirInUseError) as info:
    make_loop(tmp_path)
  expect("R11", info.value)
  first.close()
  make_loop(tmp_path).close()  # once the first is closed, a new one may use the directory


@pytest.mark.parametrize("n_steps", [2.5, -3, True])
def test_R12_run_with_a_fraction_or_a_negative_number(n_steps):
  loop = make_loop()
  with pytest.raises(ConfigError) as info:
    loop.run(n_steps)
  expect("R12", info.value)


def test_R13_missing_data_position_warns(tmp_path, caplog):
  import shutil

  first = make_loop(tmp_path)
  first.run(2)
  first.close()
  shutil.rmtree(tmp_path / "checkpoints" / "2" / "data")
  with caplog.at_level(logging.WARNING):
    loop = make_loop(tmp_path)
  expect("R13", caplog.text)
  loop.close()


# ---- Checkpoints: digests, renamed steps, a file in the way -------------------------------------


def _saved(tmp_path, name="run"):
  workdir = tmp_path / name
  loop = make_loop(workdir)
  loop.run(2)
  state = loop.state
  loop.close()
  return workdir, state


def test_R14_flipped_bits_in_a_checkpoint_are_detected(tmp_path):
  import shutil

  from declax.training.checkpoints import CheckpointCorruptedError, Checkpointer

  workdir, state = _saved(tmp_path)
  kernel = np.array(state.params["layers_1"]["kernel"])
  kernel.view(np.uint32).flat[0] ^= 1  # the lowest bit of one weight
  damaged = state.replace(params={**state.params, "layers_1": {
      **state.params["layers_1"], "kernel": jnp.asarray(kernel)}})
  other = tmp_path / "damaged" / "checkpoints"
  writer = Checkpointer(other, async_save=False, digests=False)
  writer.save(2, damaged, {"train": [{"index": 2}]})
  writer.close()
  shutil.rmtree(other / "2" / "meta")  # the digests of the intact arrays, as saved
  shutil.copytree(workdir / "checkpoints" / "2" / "meta", other / "2" / "meta")
  with pytest.raises(CheckpointCorruptedError) as info:
    make_loop(tmp_path / "damaged")
  expect("R14", info.value)
  make_loop(workdir, checkpoint_digests=False).close()  # the opt-out still restores


def test_R15_a_renamed_step_directory(tmp_path):
  from declax.training.checkpoints import CheckpointCorruptedError

  workdir, _ = _saved(tmp_path)
  os.rename(workdir / "checkpoints" / "2", workdir / "checkpoints" / "30")
  with pytest.raises(CheckpointCorruptedError) as info:
    make_loop(workdir)
  expect("R15", info.value)


def test_R16_a_file_where_the_checkpoints_go_is_found_up_front(tmp_path):
  from declax.training.workdir import WorkdirError

  (tmp_path / "checkpoints").write_text("not a directory")
  with pytest.raises(WorkdirError) as info:
    make_loop(tmp_path)
  expect("R16", info.value)


# ---- Clearer errors: another optimizer, labels beyond the classes -------------------------------


def test_R27_adamw_to_adam_on_resume_is_a_different_optimizer_not_damage(tmp_path):
  from declax.training.checkpoints import OptimizerMismatchError

  def loop(name):
    task = TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), make_optimizer(name, 1e-2),
                     n_steps_per_checkpoint=2)
    return Loop(tiny_classifier(), task, output_dir=tmp_path, writers=MultiWriter([]),
                print_summary=False)

  first = loop("adamw")
  first.run(2)
  first.close()
  with pytest.raises(OptimizerMismatchError) as info:
    loop("adam")
  expect("R27", info.value)
  assert os.listdir(tmp_path / "checkpoints") == ["2"]


@pytest.mark.parametrize("where", ["training", "eval"])
def test_R28_labels_beyond_the_model_classes(where):
  data = ArrayBatches(n_classes=5)  # labels up to 4, the model has 3 classes
  kwargs = {}
  if where == "eval":
    kwargs = dict(eval_tasks=[EvalTask(ArrayBatches(n_classes=5), [tl.Accuracy()])])
    data = ArrayBatches()
  with pytest.raises(ConfigError) as info:
    make_loop(data=data, **kwargs)
  expect("R28", info.value)
  assert f"the {where} data" in str(info.value)


# ---- Work directories with something in the way ------------------------------------------------


@pytest.mark.parametrize("name", [".declax.lock", "metrics.jsonl"])
def test_R29_a_directory_where_a_run_writes_a_file(tmp_path, name):
  from declax.training.workdir import WorkdirError

  (tmp_path / name).mkdir()
  with pytest.raises(WorkdirError) as info:
    make_loop(tmp_path)
  expect("R29", info.value)


def test_R30_a_dangling_symlink_workdir(tmp_path):
  from declax.training.workdir import WorkdirError

  os.symlink(tmp_path / "gone", tmp_path / "run")
  with pytest.raises(WorkdirError) as info:
    make_loop(tmp_path / "run")
  expect("R30", info.value)



def test_R36_an_unknown_metric_to_rank_checkpoints_by_is_found_up_front(tmp_path):
  eval_tasks = [EvalTask(ArrayBatches(), [tl.CrossEntropyLoss(), tl.Accuracy()],
                         metric_names=["loss", "accuracy"])]
  with pytest.raises(ConfigError) as info:
    make_loop(tmp_path, eval_tasks=eval_tasks, checkpoint_low_metric="acuracy")
  expect("R36", info.value)
  assert not os.path.exists(tmp_path / "checkpoints" / "1")
