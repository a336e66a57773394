"""The Loop on meshes of 8 fake CPU devices: same losses as one device, shards as the rules say,
activation constraints present in the compiled step, and resume onto a different mesh.

Each test runs fresh interpreters (XLA flags must be set before JAX starts)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.subprocess_utils import run_snippet

PRELUDE = """
import json, re, sys
import jax, numpy as np
import declax.layers as tl
from declax import sharding
from declax.models import TransformerLM
from declax.training import Loop, TrainTask, make_optimizer
from declax.training.metric_writers import MultiWriter

class TokenBatches:
  '''Batch i depends only on i: (tokens, tokens, weights), resumable like a real pipeline.'''
  def __init__(self):
    self.index = 0
  def __iter__(self):
    return self
  def __next__(self):
    rng = np.random.default_rng([7, self.index])
    self.index += 1
    x = rng.integers(1, 32, (8, 16)).astype(np.int32)
    return x, x, np.ones(x.shape, np.float32)
  def get_state(self):
    return {'index': self.index}
  def set_state(self, state):
    self.index = state['index']

def lm(n_layers=2):
  return TransformerLM(32, d_model=16, d_ff=32, n_layers=n_layers, n_heads=2, max_len=16,
                       dropout=0.0)

def loop(mesh, output_dir=None, n_layers=2):
  if mesh == 'one':
    mesh = sharding.mesh_from_config({'data': 1}, devices=jax.devices()[:1])
  task = TrainTask(TokenBatches(), tl.WeightedCategoryCrossEntropy(),
                   make_optimizer('adam', 1e-2), n_steps_per_checkpoint=None)
  return Loop(lm(n_layers), task, mesh=mesh, output_dir=output_dir, writers=MultiWriter([]),
              log_every=1, print_summary=False, async_checkpoints=False)

def per_device_bytes(tree):
  return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))
"""

MESHES = {"data8": {"data": 8}, "mixed": {"data": 2, "fsdp": 2, "tensor": 2},
          "fsdp8": {"fsdp": 8}}


@pytest.mark.slow
def test_meshes_give_one_device_losses_and_rule_shards():
  out = run_snippet(PRELUDE + f"""
results = {{}}
for name, mesh in [('one', 'one')] + list({MESHES!r}.items()):
  l = loop(mesh)
  l.run(5)
  params = l.state.params
  flat = {{jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}}
  embedding = next(x for k, x in flat.items() if k.endswith("['embedding']"))
  query = next(x for k, x in flat.items() if k.endswith("['query_kernel']"))
  results[name] = {{
      'losses': [v for _, v in l.losses],
      'embedding': [list(embedding.shape), list(embedding.addressable_shards[0].data.shape)],
      'query': [list(query.shape), list(query.addressable_shards[0].data.shape)],
      'total': sum(x.nbytes for x in jax.tree.leaves(params)),
      'per_device': per_device_bytes(params),
      'opt_per_device': per_device_bytes(l.state.opt_state)}}
print(json.dumps(results))
""")
  one = out["one"]
  for name in MESHES:
    np.testing.assert_allclose(out[name]["losses"], one["losses"], rtol=1e-5, atol=1e-6)
  # Embedding is ('vocab', 'embed'): vocab -> tensor, embed -> fsdp.
  assert out["data8"]["embedding"][1] == [32, 16]
  assert out["mixed"]["embedding"][1] == [16, 8]
  assert out["fsdp8"]["embedding"][1] == [32, 2]
  # Query kernel is ('embed', 'heads', 'kv') = (16, 2, 8): heads takes tensor, kv stays whole.
  assert out["mixed"]["query"][1] == [8, 1, 8]
  assert out["fsdp8"]["query"][1] == [2, 2, 8]
  # Pure data parallelism replicates; FSDP over 8 devices holds about an eighth of the weights
  # (biases and norms, which have no 'embed' dimension to split, stay whole).
  assert out["data8"]["per_device"] == out["data8"]["total"]
  assert out["fsdp8"]["per_device"] < out["fsdp8"]["total"] / 5
  assert out["fsdp8"]["opt_per_device"] < out["data8"]["opt_per_device"] / 4


@pytest.mark.slow
def test_compiled_step_contains_the_activation_constraints():
  out = run_snippet(PRELUDE + """
from declax.training.step import make_train_step
counts = {}
for n_layers in (1, 2):
  l = loop({'data': 2, 'fsdp': 2, 'tensor': 2}, n_layers=n_layers)
  counts[n_layers] = len(re.findall('sharding_constraint', l.lower_train_step().as_text()))
# The same step traced WITHOUT the mesh and rules: Linen drops the constraints silently.
l = loop({'data': 2, 'fsdp': 2, 'tensor': 2}, n_layers=2)
bare = jax.jit(make_train_step(l.model, tl.WeightedCategoryCrossEntropy(),
                               make_optimizer('adam', 1e-2)))
spec = jax.ShapeDtypeStruct((8, 16), np.int32)
text = bare.lower(l.state, (spec, spec, jax.ShapeDtypeStruct((8, 16), np.float32))).as_text()
print(json.dumps({'counts': counts, 'bare': len(re.findall('sharding_constraint', text))}))
""")
  one, two = out["counts"]["1"], out["counts"]["2"]
  assert one > 0 and two > one  # every decoder block adds its constraints
  assert out["bare"] == 0       # what a silent no-op looks like


def _stage(workdir: str, mesh: dict | str, steps: int, n_devices: int) -> list[float]:
  return run_snippet(PRELUDE + f"""
l = loop({mesh!r}, output_dir={workdir!r})
start = l.step
l.run({steps} - start)
l.close()
print(json.dumps({{'start': start, 'losses': [v for _, v in l.losses]}}))
""", n_devices=n_devices)


@pytest.mark.slow
def test_resume_onto_a_different_mesh(tmp_path):
  reference = _stage(str(tmp_path / "reference"), "one", 8, 1)["losses"]
  workdir = str(tmp_path / "moving")
  stages = [(MESHES["mixed"], 3, 8), ({"data": 4}, 5, 4), ("one", 7, 1), (MESHES["fsdp8"], 8, 8)]
  losses, expected_start = [], 0
  for mesh, steps, n_devices in stages:
    result = _stage(workdir, mesh, steps, n_devices)
    assert result["start"] == expected_start  # resumed where the previous mesh stopped
    losses += result["losses"]
    expected_start = steps
  np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=1e-6)
