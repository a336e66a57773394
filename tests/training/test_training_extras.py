"""EMA parameters, reduce on plateau, profiling, curves and HParams, starting from trained
weights."""

from __future__ import annotations

import glob
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax.training import EvalTask, Loop, TrainTask, make_optimizer
from declax.training.metric_writers import MetricWriter
from declax.training.model_init import ModelInitError, load_params, loader
from declax.training.optimizers import ema_params, ema_params_of, feed_plateau, plateau
from tests.training.training_utils import ArrayBatches


def classifier(hidden=8):
  return tl.Serial(tl.Flatten(), tl.Dense(hidden), tl.Relu(), tl.Dense(3), tl.LogSoftmax())


def eval_task():
  return EvalTask(lambda: ArrayBatches(seed=99), [tl.CrossEntropyLoss()], metric_names=["loss"])


def task(tx, every=None):
  return TrainTask(ArrayBatches(), tl.CrossEntropyLoss(), tx, n_steps_per_checkpoint=every)


def quiet(**kwargs):
  return dict(writers=MetricWriter(), print_summary=False, **kwargs)


# ---- EMA ----------------------------------------------------------------------------------------


def test_ema_params_average_the_parameter_trajectory():
  tx = optax.chain(optax.sgd(1.0), ema_params(0.5))
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  for grad in (-2.0, -2.0):
    updates, state = tx.update({"w": jnp.float32(grad)}, state, params)
    params = optax.apply_updates(params, updates)
  # params 2 then 4; ema 0.5*0 + 0.5*2 = 1, then 0.5*1 + 0.5*4 = 2.5
  assert float(ema_params_of(state)["w"]) == pytest.approx(2.5)
  assert float(params["w"]) == 4.0


@pytest.mark.slow
def test_evaluation_runs_on_the_ema_params_when_configured():
  tx = make_optimizer("sgd", 0.5, ema_decay=0.9)
  on_ema = Loop(classifier(), task(tx), eval_tasks=[eval_task()], **quiet(seed=2))
  on_ema.run(3)
  raw = Loop(classifier(), task(make_optimizer("sgd", 0.5, ema_decay=0.9)),
             eval_tasks=[eval_task()], **quiet(seed=2, eval_on_ema=False))
  raw.run(3)
  ema = ema_params_of(on_ema.state.opt_state)
  model = tl.with_mode(classifier(), "eval")
  x, y = next(ArrayBatches(seed=99))
  for loop, params in ((on_ema, ema), (raw, raw.params)):
    logp = model.apply({"params": params}, x)
    expected = -float(jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1)))
    assert loop.eval_history[-1][1]["eval/loss"] == pytest.approx(expected, rel=1e-5)
  assert on_ema.eval_history[-1][1] != raw.eval_history[-1][1]


# ---- Reduce on plateau --------------------------------------------------------------------------


def test_plateau_fed_by_an_evaluation_metric_lowers_the_learning_rate():
  kwargs = dict(patience=1, factor=0.5)
  tx = optax.chain(optax.sgd(1.0), plateau("eval/loss", **kwargs))
  params = {"w": jnp.ones(())}
  state = tx.init(params)
  for value in (1.0, 2.0, 2.0):  # an improvement, then two evaluations without one
    state = feed_plateau(state, value, **kwargs)
  updates, _ = tx.update({"w": jnp.float32(1.0)}, state, params, value=jnp.float32(0.0))
  assert float(updates["w"]) == pytest.approx(-0.25)  # two halvings; the train value ignored


@pytest.mark.slow
def test_loop_feeds_the_plateau_and_logs_the_scaled_learning_rate():
  plateau_kwargs = dict(metric="eval/loss", patience=1, factor=0.5)
  tx = make_optimizer("sgd", 0.0, plateau_kwargs=plateau_kwargs)  # lr 0: eval loss never moves

  class Recorder(MetricWriter):
    def __init__(self):
      self.scalars = []

    def write_scalars(self, step, scalars):
      self.scalars.append(dict(scalars))

  recorder = Recorder()
  loop = Loop(classifier(), task(tx), eval_tasks=[eval_task()], eval_every=1, log_every=1,
              writers=recorder, print_summary=False, plateau=plateau_kwargs)
  loop.run(4)
  scales = [float(s.scale) for s in jax.tree.leaves(
      loop.state.opt_state, is_leaf=lambda x: isinstance(x, optax.contrib.ReduceLROnPlateauState))
      if isinstance(s, optax.contrib.ReduceLROnPlateauState)]
  assert scales == [0.125]  # evaluations 2, 3 and 4 did not improve on the first


# ---- Profiling, curves, HParams -----------------------------------------------------------------


@pytest.mark.slow
def test_profile_steps_write_a_trace_and_curves_and_hparams_are_written(tmp_path):
  loop = Loop(classifier(), task(optax.sgd(0.1)), eval_tasks=[eval_task()], output_dir=tmp_path,
              eval_every=2, log_every=1, profile_steps=(2, 3), hparams={"lr": 0.1, "model": "mlp"},
              print_summary=False)
  loop.run(4)
  loop.close()
  traces = glob.glob(str(tmp_path / "tensorboard" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  assert traces, os.listdir(tmp_path / "tensorboard")
  png = tmp_path / "curves.png"
  assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  events = EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  plugins = events.PluginTagToContent("hparams")
  assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
  from tensorboard.plugins.hparams import plugin_data_pb2

  start = plugin_data_pb2.HParamsPluginData.FromString(
      plugins["_hparams_/session_start_info"]).session_start_info
  assert start.hparams["lr"].number_value == 0.1 and start.hparams["model"].string_value == "mlp"
  experiment = plugin_data_pb2.HParamsPluginData.FromString(
      plugins["_hparams_/experiment"]).experiment
  assert {m.name.tag for m in experiment.metric_infos} == {"train/loss", "eval/loss"}


# ---- Starting from trained weights --------------------------------------------------------------


def _trained_workdir(tmp_path, hidden=8):
  loop = Loop(classifier(hidden), task(optax.sgd(0.1)), output_dir=tmp_path / "pre",
              **quiet(async_checkpoints=False))
  loop.run(2)
  loop.close()
  return loop


@pytest.mark.slow
def test_model_init_starts_from_a_workdirs_params_and_skips_a_new_head(tmp_path):
  pre = _trained_workdir(tmp_path)
  fresh = Loop(classifier(), task(optax.sgd(0.1)), **quiet(seed=7))
  loaded = Loop(classifier(), task(optax.sgd(0.1)), **quiet(
      seed=7, init_params=loader(tmp_path / "pre", skip=("layers_3/.*",))))
  assert loaded.step == 0
  np.testing.assert_array_equal(loaded.params["layers_1"]["kernel"],
                                pre.params["layers_1"]["kernel"])
  np.testing.assert_array_equal(loaded.params["layers_3"]["kernel"],  # skipped: random init
                                fresh.params["layers_3"]["kernel"])


def test_model_init_lists_mismatched_paths(tmp_path):
  _trained_workdir(tmp_path)
  abstract = jax.eval_shape(lambda: classifier(16).init(jax.random.PRNGKey(0),
                                                        jnp.zeros((1, 4, 4, 1)))["params"])
  with pytest.raises(ModelInitError) as info:
    load_params(tmp_path / "pre", abstract)
  message = str(info.value)
  assert "nothing was loaded" in message and "config.model_load.skip" in message
  assert "layers_1/kernel: float32[16, 8] vs float32[16, 16]" in message
  with pytest.raises(ModelInitError, match="does not exist"):
    load_params(tmp_path / "nowhere", abstract)


TRAX_MLP = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "trax_checkpoints",
                        "mlp")


@pytest.mark.skipif(importlib.util.find_spec("declax.trax_compat") is None
                    or not os.path.isdir(TRAX_MLP),
                    reason="needs declax.trax_compat (traxcompat branch) and its Trax fixtures")
def test_model_init_from_a_trax_checkpoint():
  import json

  from declax.trax_compat import init_from_file, model_from_trax

  spec = json.load(open(os.path.join(TRAX_MLP, "model.json")))
  model = model_from_trax(spec["model"], mode="eval", **spec["kwargs"])
  inputs = np.load(os.path.join(TRAX_MLP, "inputs.npy"))
  path = os.path.join(TRAX_MLP, "model.pkl.gz")
  expected = init_from_file(model, path, inputs)["params"]
  abstract = jax.eval_shape(lambda: expected)
  loaded = load_params(path, abstract, model=model, inputs=[inputs])
  flat = jax.tree_util.tree_flatten_with_path(expected)[0]
  assert len(loaded) == len(flat)
  for p, value in flat:
    np.testing.assert_array_equal(loaded["/".join(str(k.key) for k in p)], value)
