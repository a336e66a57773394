"""declax.sharding on 8 fake CPU devices (each test runs in a fresh interpreter)."""

import pytest

from tests.subprocess_utils import run_snippet

PRELUDE = """
import json, logging
import flax.linen as nn, jax, jax.numpy as jnp, numpy as np, optax
from declax import sharding as sh
from declax.layers.base import Layer, param_init

class Block(Layer):
  d: int = 64
  @nn.compact
  def forward(self, x):
    up = self.param('up', param_init(nn.initializers.lecun_normal(), ('embed', 'mlp')),
                    (x.shape[-1], 4 * self.d))
    down = self.param('down', param_init(nn.initializers.lecun_normal(), ('mlp', 'embed')),
                      (4 * self.d, self.d))
    table = self.param('unnamed', nn.initializers.normal(), (128, 96))
    odd = self.param('odd', param_init(nn.initializers.ones, ('embed', 'mlp')), (6, 10))
    return jnp.tanh(x @ up) @ down + jnp.sum(table) * 0 + jnp.sum(odd) * 0
"""


def test_mesh_from_config_sizes_and_errors():
  out = run_snippet(PRELUDE + """
errors = {}
for name, cfg in [('product', {'data': 3}), ('two_free', {'data': -1, 'fsdp': -1}),
                  ('unknown', {'dta': 2}), ('indivisible', {'data': -1, 'tensor': 3})]:
  try:
    sh.mesh_from_config(cfg)
  except sh.ShardingError as e:
    errors[name] = str(e)
print(json.dumps({
  'default': dict(sh.mesh_from_config().shape),
  'rest': dict(sh.mesh_from_config({'data': -1, 'tensor': 2}).shape),
  'types': [str(t) for t in sh.mesh_from_config({'fsdp': 8}).axis_types],
  'errors': errors}))
""")
  assert out["default"] == {"data": 8, "fsdp": 1, "tensor": 1}
  assert out["rest"] == {"data": 4, "fsdp": 1, "tensor": 2}
  assert all("Auto" in t for t in out["types"])
  assert "data*fsdp*tensor = 3, but 8 devices" in out["errors"]["product"]
  assert "only one axis may be -1" in out["errors"]["two_free"]
  assert "unknown axis ['dta']" in out["errors"]["unknown"]
  assert "multiple of 3" in out["errors"]["indivisible"]


@pytest.mark.parametrize("mesh,expected", [
    ({"data": 8}, {"up": [64, 256], "down": [256, 64], "unnamed": [128, 96], "odd": [6, 10]}),
    ({"data": 2, "fsdp": 2, "tensor": 2},
     {"up": [32, 128], "down": [128, 32], "unnamed": [64, 96], "odd": [3, 5]}),
    ({"fsdp": 8}, {"up": [8, 256], "down": [256, 8], "unnamed": [16, 96], "odd": [6, 10]}),
])
@pytest.mark.slow
def test_parameter_shards_follow_rules_and_fallback(mesh, expected):
  out = run_snippet(PRELUDE + f"""
mesh = sh.mesh_from_config({mesh!r})
rules = sh.rules_from_config()
model, tx = Block(), optax.adam(1e-3)
def init_fn(rng):
  params = model.init(rng, jnp.zeros((8, 64)))['params']
  return {{'params': params, 'opt': tx.init(params)}}
state, shardings = sh.create_sharded_state(init_fn, jax.random.key(0), mesh, rules)
shard = lambda v: list(v.addressable_shards[0].data.shape)
print(json.dumps({{
  'params': {{k: shard(v) for k, v in state['params'].items()}},
  'mu': {{k: shard(v) for k, v in state['opt'][0].mu.items()}},
  'total': sum(v.nbytes for v in state['params'].values()),
  'per_device': sum(v.addressable_shards[0].data.nbytes for v in state['params'].values())}}))
""")
  assert out["params"] == expected
  assert out["mu"] == expected  # optimizer state is sharded like its parameters
  if mesh == {"fsdp": 8}:
    assert out["per_device"] < out["total"] / 7  # ~ total / fsdp (the small tensor stays whole)


def test_non_divisible_dimension_is_replicated_with_warning():
  out = run_snippet(PRELUDE + """
import io
stream = io.StringIO()
logging.getLogger('declax.sharding').addHandler(logging.StreamHandler(stream))
mesh = sh.mesh_from_config({'data': 2, 'tensor': 4})
param = nn.Partitioned(jnp.zeros((6, 10)), names=('embed', 'mlp'))
spec = sh.leaf_spec(param, mesh, sh.rules_from_config(), 'odd')
print(json.dumps({'spec': [a for a in spec], 'log': stream.getvalue()}))
""")
  assert out["spec"][1] is None  # tensor=4 does not divide 10: that dim is replicated
  assert "odd dim 1 of size 10 is not divisible" in out["log"]


def test_rules_overrides_and_errors():
  out = run_snippet(PRELUDE + """
rules = dict(sh.rules_from_config({'embed': None, 'mlp': ['data', 'tensor']}))
try:
  sh.rules_from_config({'embed': 'model'})
  error = None
except sh.ShardingError as e:
  error = str(e)
print(json.dumps({'embed': rules['embed'], 'mlp': list(rules['mlp']),
                  'batch': list(rules['batch']), 'error': error}))
""", n_devices=1)
  assert out["embed"] is None and out["mlp"] == ["data", "tensor"]
  assert out["batch"] == ["data", "fsdp"]
  assert "config.sharding_rules['embed']: unknown mesh axis ['model']" in out["error"]


def test_shard_batch_and_divisibility():
  out = run_snippet(PRELUDE + """
mesh = sh.mesh_from_config({'data': 4, 'fsdp': 2})
x, y = sh.shard_batch((np.ones((16, 3), np.float32), np.arange(16)), mesh)
try:
  sh.shard_batch((np.ones((12, 3), np.float32),), mesh)
  error = None
except sh.ShardingError as e:
  error = str(e)
print(json.dumps({'shape': list(x.shape), 'rows': list(x.addressable_shards[0].data.shape),
                  'spec': str(y.sharding.spec), 'error': error}))
""")
  assert out["shape"] == [16, 3] and out["rows"] == [2, 3]
  assert "config.train.batch_size=12 is not divisible by the mesh's data*fsdp = 8" in out["error"]


def test_summary_reports_specs_and_bytes_per_device():
  out = run_snippet(PRELUDE + """
import declax
mesh = sh.mesh_from_config({'fsdp': 4, 'tensor': 2})
table = declax.summary(Block(), jnp.zeros((8, 64)), mesh=mesh)
print(json.dumps({'table': table}))
""")
  table = out["table"]
  assert "Sharding over mesh {'data': 1, 'fsdp': 4, 'tensor': 2}" in table
  up = next(line for line in table.splitlines() if line.startswith("up "))
  assert "P('fsdp', 'tensor')" in up and "65,536" in up and "8,192" in up


def test_multi_slice_mesh_puts_dcn_axes_across_slices():
  out = run_snippet(PRELUDE + """
import dataclasses
@dataclasses.dataclass(frozen=True)
class FakeTpu:
  id: int
  slice_index: int
  process_index: int = 0
  platform: str = 'cpu'
  device_kind: str = 'cpu'
fake = [FakeTpu(i, i // 4) for i in range(8)]
grid = sh.hybrid_devices({'data': 2, 'fsdp': 4, 'tensor': 1}, {'data': 2}, fake)
errors = {}
for name, full, dcn in [('indivisible', {'data': 1, 'fsdp': 8, 'tensor': 1}, {'data': 2}),
                        ('slices', {'data': 4, 'fsdp': 2, 'tensor': 1}, {'data': 4}),
                        ('axis', {'data': 2, 'fsdp': 4, 'tensor': 1}, {'dta': 2})]:
  try:
    sh.hybrid_devices(full, dcn, fake)
  except sh.ShardingError as e:
    errors[name] = str(e)
real = sh.mesh_from_config({'data': -1, 'fsdp': 2, 'dcn': {'data': 1}})
print(json.dumps({'shape': list(grid.shape),
                  'slices': [[d.slice_index for d in row.ravel()] for row in grid],
                  'errors': errors, 'real': dict(real.shape)}))
""")
  assert out["shape"] == [2, 4, 1]
  assert out["slices"] == [[0, 0, 0, 0], [1, 1, 1, 1]]  # data crosses slices; fsdp stays inside
  assert "data: 2 slices of 1" in out["errors"]["indivisible"]
  assert "spans 4 slices, but the 8 devices come from 2 slices" in out["errors"]["slices"]
  assert "config.mesh.dcn: unknown axis ['dta']" in out["errors"]["axis"]
  assert out["real"] == {"data": 4, "fsdp": 2, "tensor": 1}
