"""The Loop and `declax-train` on two processes on 127.0.0.1 (2 fake CPU devices each), against
one process with all four devices. Workers run through tests/multihost_utils.py: fresh port,
bounded waits, every worker killed by PID at the end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.multihost_utils import run_workers

WORKER = """
import json, sys
from tests.multihost_utils import init_worker
init_worker()
import jax, numpy as np
import declax.layers as tl
from declax.training import Loop, TrainTask, make_optimizer
from declax.training.metric_writers import MultiWriter

class GlobalBatches:
  '''Global batch i depends only on i; each process feeds its own rows of it.'''
  def __init__(self, global_size=16):
    self.index, self.size = 0, global_size
  def __iter__(self):
    return self
  def __next__(self):
    rng = np.random.default_rng([3, self.index])
    self.index += 1
    x = rng.normal(size=(self.size, 4, 4, 1)).astype(np.float32)
    y = (x.reshape(self.size, -1).sum(-1) > 0).astype(np.int32)
    rows = self.size // jax.process_count()
    start = rows * jax.process_index()
    return x[start:start + rows], y[start:start + rows]
  def get_state(self):
    return {'index': self.index}
  def set_state(self, state):
    self.index = state['index']

workdir, steps = sys.argv[1], int(sys.argv[2])
model = tl.Serial(tl.Flatten(), tl.Dense(32), tl.Relu(), tl.Dense(2), tl.LogSoftmax())
task = TrainTask(GlobalBatches(), tl.CrossEntropyLoss(), make_optimizer('adam', 1e-2),
                 n_steps_per_checkpoint=None)
loop = Loop(model, task, mesh={'data': -1, 'fsdp': 2}, output_dir=workdir or None,
            writers=MultiWriter([]), log_every=1, print_summary=False)
start = loop.step
loop.run(steps - start)
loop.close()
kernel = loop.state.params['layers_1']['kernel']
print(json.dumps({'start': start, 'losses': [v for _, v in loop.losses],
                  'kernel_sum': float(jax.jit(lambda k: k.sum())(kernel)),
                  'devices': jax.device_count(), 'local': jax.local_device_count()}))
"""


def _last_json(stdout: str) -> dict:
  return json.loads(stdout.strip().splitlines()[-1])


def _ok(results) -> list[dict]:
  for i, (code, _, err) in enumerate(results):
    assert code == 0, f"process {i} exited {code}:\n{err[-3000:]}"
  return [_last_json(out) for _, out, _ in results]


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_all_devices():
  two = _ok(run_workers(WORKER, n_processes=2, n_devices=2, args=["", "5"], timeout=240))
  one = _ok(run_workers(WORKER, n_processes=1, n_devices=4, args=["", "5"], timeout=240))[0]
  assert two[0]["devices"] == 4 and two[0]["local"] == 2 and one["local"] == 4
  for process in two:  # every process sees the same global losses and parameters
    np.testing.assert_allclose(process["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(process["kernel_sum"], one["kernel_sum"], rtol=1e-5)


@pytest.mark.slow  # two JAX processes: ~20 s on 2 cores; the quick subset keeps one
def test_two_processes_save_every_data_position_and_resume_exactly(tmp_path):
  def run(workdir, steps):
    return _ok(run_workers(WORKER, n_processes=2, n_devices=2, args=[workdir, str(steps)],
                           timeout=240))[0]

  straight = run(str(tmp_path / "straight"), 4)
  first = run(str(tmp_path / "split"), 2)
  with open(tmp_path / "split" / "checkpoints" / "2" / "data" / "metadata") as f:
    assert json.load(f) == {"train": [{"index": 2}, {"index": 2}]}  # one position per process
  resumed = run(str(tmp_path / "split"), 4)
  assert resumed["start"] == 2
  assert straight["losses"] == first["losses"] + resumed["losses"]
  assert os.path.isdir(tmp_path / "split" / "checkpoints" / "4")


CLI_WORKER = """
import os, sys
from declax import cli
workdir = sys.argv[1]
sys.argv = ['declax-train', '--config', 'configs/digits_mlp.py', '--workdir', workdir,
            '--config.train.steps=6', '--config.train.log_every=2',
            '--config.train.checkpoint_every=3', '--config.train.eval_every=3',
            '--coordinator_address', os.environ['DECLAX_TEST_COORDINATOR'],
            '--num_processes', os.environ['DECLAX_TEST_NUM_PROCESSES'],
            '--process_id', os.environ['DECLAX_TEST_PROCESS_ID'], '--initialization_timeout=60']
cli.main()
"""


@pytest.mark.slow  # two JAX processes: ~20 s on 2 cores; the quick subset keeps one
def test_train_script_runs_multi_host_with_coordinator_flags(tmp_path):
  import declax.data

  data_dir, workdir = str(tmp_path / "data"), str(tmp_path / "run")
  declax.data.prepare("declax_digits", data_dir)  # hosts must not race to prepare a dataset
  env = {"DECLAX_DATA_DIR": data_dir}
  results = run_workers(CLI_WORKER, n_processes=2, n_devices=1, args=[workdir], timeout=300,
                        env=env)
  for i, (code, _, err) in enumerate(results):
    assert code == 0, f"process {i} exited {code}:\n{err[-3000:]}"
  (_, out0, _), (_, out1, _) = results
  assert "step 6/6" in out0 and "eval/accuracy" in out0
  assert "step 6" not in out1 and "eval/" not in out1  # only process 0 reports
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = f.read().splitlines()
  assert any('"step": 6' in line for line in lines)
  assert len(lines) == len(set(lines))  # written once, by process 0
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == "6"
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["train"]["steps"] == 6
