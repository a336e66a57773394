"""Test-wide settings: one CPU device here; multi-device tests run in subprocesses with
XLA_FLAGS set before JAX starts (see tests/test_sharding.py).

Silent broadcasting between arrays of different ranks and implicit dtype promotion are errors in
the tests of declax's own numerics (`jax_numpy_rank_promotion='raise'`,
`jax_numpy_dtype_promotion='strict'`), so a layer that relies on either is caught here rather
than in a user's model. The one exception is inside the train step: optax's update runs under
standard promotion (see declax/training/step.py).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402  (after the environment above)
import pytest  # noqa: E402


def pytest_configure(config):
  """The quick subset (`-m "not slow"`) compiles about a thousand tiny programs and runs each a
  few times, so LLVM's optimisation time dominates it: there, XLA's CPU backend compiles at -O0
  (about 1.5x faster compiles). The whole suite keeps the default: its end-to-end runs train for
  hundreds of steps, which -O0 makes about 2x slower. Subprocesses inherit the setting."""
  if "not slow" in (config.getoption("markexpr", "") or "") and "optimization_level" not in (
      os.environ.get("XLA_FLAGS", "")):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()

_STRICT = ("tests/layers/", "tests/models/", "tests/test_decoding.py")
# The train-step tests read clu's metrics, whose `Average.compute` divides a float total by an
# int32 count (clu/metrics.py:811): rank promotion raises there, dtype promotion stays standard.
_NO_RANK_PROMOTION = _STRICT + ("tests/training/test_step.py", "tests/training/test_traces.py")


@pytest.fixture(autouse=True)
def _numpy_promotion(request):
  path = request.path.as_posix()
  rank = "raise" if any(p in path for p in _NO_RANK_PROMOTION) else "allow"
  dtype = "strict" if any(p in path for p in _STRICT) else "standard"
  with jax.numpy_rank_promotion(rank), jax.numpy_dtype_promotion(dtype):
    yield


@pytest.fixture
def logical_axes():
  """Runs a test under declax's default logical axis rules, as the `Loop` does, so parameters
  carry their logical axis names (outside rules, `model.init` returns plain arrays)."""
  import flax.linen as nn

  from declax.sharding import DEFAULT_RULES

  with nn.logical_axis_rules(DEFAULT_RULES):
    yield
