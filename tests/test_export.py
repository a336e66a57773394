import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax import export


def _mlp():
  model = tl.Serial(tl.Dense(8), tl.Relu(), tl.Dense(3), tl.LogSoftmax())
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 5)))
  return model, variables


def test_round_trip_matches_apply_at_any_batch(tmp_path):
  model, variables = _mlp()
  path = export.save(export.export(model, variables, jnp.zeros((2, 5))), tmp_path / "m.bin")
  predict = export.load(path)
  x = jax.random.normal(jax.random.PRNGKey(1), (11, 5))
  np.testing.assert_allclose(predict(x), model.apply(variables, x), rtol=1e-6, atol=1e-6)


def test_two_inputs_and_fixed_batch(tmp_path):
  model = tl.Serial(tl.Parallel(tl.Embedding(10, 4), tl.Embedding(7, 4)), tl.Concatenate(),
                    tl.Dense(2))
  ids = (jnp.array([1, 2, 3]), jnp.array([0, 6, 2]))
  variables = model.init(jax.random.PRNGKey(0), ids)
  exported = export.export(model, variables, *ids, batch_polymorphic=False)
  predict = export.load(export.save(exported, tmp_path / "m.bin"))
  np.testing.assert_allclose(predict(*ids), model.apply(variables, ids), rtol=1e-6)


def test_loaded_without_declax(tmp_path):
  model, variables = _mlp()
  path = export.save(export.export(model, variables, jnp.zeros((2, 5))), tmp_path / "m.bin")
  expected = np.asarray(model.apply(variables, jnp.ones((4, 5))))
  np.save(tmp_path / "expected.npy", expected)
  code = f"""
import sys, jax, jax.numpy as jnp, numpy as np
f = jax.export.deserialize(bytearray(open({str(path)!r}, 'rb').read())).call
np.testing.assert_allclose(f(jnp.ones((4, 5))), np.load({str(tmp_path / 'expected.npy')!r}),
                           rtol=1e-6)
assert not any(m.startswith(('declax', 'flax')) for m in sys.modules), 'declax was imported'
print('ok')
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.stdout.strip() == "ok", out.stderr


def test_bad_inputs_are_clear(tmp_path):
  model, variables = _mlp()
  with pytest.raises(export.ExportError, match="one example input"):
    export.export(model, variables)
  with pytest.raises(export.ExportError, match="scalar"):
    export.export(tl.Serial(tl.Relu()), {}, jnp.float32(1.0))
  (tmp_path / "junk.bin").write_bytes(b"not a program")
  with pytest.raises(export.ExportError, match="not a serialized jax.export program"):
    export.load(tmp_path / "junk.bin")
