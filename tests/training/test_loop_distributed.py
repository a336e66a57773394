"""The Loop on several (fake CPU) devices and on two processes; each test runs fresh interpreters
with XLA flags set before JAX starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from tests.subprocess_utils import ROOT, device_env, free_port, run_snippet

PRELUDE = """
import json, logging, sys
import jax, numpy as np
import declax.layers as tl
from declax.training import Loop, TrainTask, make_optimizer
from declax.training.metric_writers import MultiWriter
from tests.training.training_utils import ArrayBatches

def model():
  return tl.Serial(tl.Flatten(), tl.Dense(64), tl.Relu(), tl.Dense(3), tl.LogSoftmax())

def loop(mesh, output_dir=None, batches=None, seed_offset=0):
  task = TrainTask(batches or ArrayBatches(batch_size=16, seed=1 + seed_offset),
                   tl.CrossEntropyLoss(), make_optimizer('adam', 1e-2),
                   n_steps_per_checkpoint=None)
  return Loop(model(), task, mesh=mesh, output_dir=output_dir, writers=MultiWriter([]),
              log_every=1, print_summary=False)
"""


def test_sharded_training_matches_one_device():
  out = run_snippet(PRELUDE + """
from declax import sharding
results = {}
for name, mesh in [('one', sharding.mesh_from_config({'data': 1}, devices=jax.devices()[:1])),
                   ('fsdp', {'data': 2, 'fsdp': 2, 'tensor': 1}),
                   ('tensor', {'data': 2, 'fsdp': 1, 'tensor': 2})]:
  l = loop(mesh)
  l.run(4)
  kernel = l.state.params['layers_1']['kernel']
  mu = [x for p, x in jax.tree_util.tree_flatten_with_path(l.state.opt_state)[0]
        if 'mu' in jax.tree_util.keystr(p) and x.shape == kernel.shape][0]
  results[name] = {'losses': [v for _, v in l.losses], 'spec': str(kernel.sharding.spec),
                   'mu_spec': str(mu.sharding.spec)}
print(json.dumps(results))
""", n_devices=4)
  one = out["one"]["losses"]
  for name in ("fsdp", "tensor"):
    np.testing.assert_allclose(out[name]["losses"], one, rtol=1e-5)
    assert out[name]["spec"] == out[name]["mu_spec"]
    # Dense kernels are ('embed', 'mlp'): embed -> fsdp, mlp -> tensor; Adam's moments follow.
    assert out[name]["spec"] == "P('fsdp', 'tensor')"


WORKER = PRELUDE + """
import os
pid, nproc, port, workdir, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=int(nproc),
                           process_id=int(pid), initialization_timeout=60)
l = loop({'data': -1}, output_dir=workdir, seed_offset=10 * jax.process_index())
start = l.step
l.run(int(steps) - start)
l.close()
if jax.process_index() == 0:
  print(json.dumps({'start': start, 'losses': [v for _, v in l.losses]}))
"""


def _two_processes(workdir: str, steps: int) -> dict:
  port = free_port()
  env = device_env(2)
  procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER), str(i), "2",
                             str(port), workdir, str(steps)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
           for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outputs, strict=True):
    assert p.returncode == 0, err[-3000:]
  return json.loads(outputs[0][0].strip().splitlines()[-1])


def test_two_processes_save_every_data_position_and_resume_exactly(tmp_path):
  straight = _two_processes(str(tmp_path / "straight"), 4)
  first = _two_processes(str(tmp_path / "split"), 2)
  data = json.load(open(tmp_path / "split" / "checkpoints" / "2" / "data" / "metadata"))
  assert data == {"train": [{"index": 2}, {"index": 2}]}
  resumed = _two_processes(str(tmp_path / "split"), 4)
  assert resumed["start"] == 2
  assert straight["losses"] == first["losses"] + resumed["losses"]
  assert os.path.isdir(tmp_path / "split" / "checkpoints" / "4")
