"""Test-wide settings: one CPU device here; multi-device tests run in subprocesses with
XLA_FLAGS set before JAX starts (see tests/test_sharding.py).

Silent broadcasting between arrays of different ranks and implicit dtype promotion are errors in
the tests of declax's own numerics (`jax_numpy_rank_promotion='raise'`,
`jax_numpy_dtype_promotion='strict'`), so a layer that relies on either is caught here rather
than in a user's model. Train-step tests keep standard dtype promotion: optax's optimizers (e.g.
Adam's bias correction, a Python float times the int32 step count) rely on it.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402  (after the environment above)
import pytest  # noqa: E402

_STRICT = ("tests/layers/", "tests/models/", "tests/test_decoding.py")
_NO_RANK_PROMOTION = _STRICT + ("tests/training/test_step.py", "tests/training/test_traces.py")
# Whole training runs go through optax, whose Adam multiplies a Python float by the int32 step:
# they keep standard dtype promotion (rank promotion still raises).
_OPTAX_RUNS = ("tests/models/test_end_to_end.py",
               # Trax's extra layers (issue 14) are not clean under strict promotion yet.
               "tests/layers/test_trax_extras.py")


@pytest.fixture(autouse=True)
def _numpy_promotion(request):
  path = request.path.as_posix()
  rank = "raise" if any(p in path for p in _NO_RANK_PROMOTION) else "allow"
  if "test_trax_extras" in path:
    rank = "allow"
  exempt = any(p in path for p in _OPTAX_RUNS)
  strict = any(p in path for p in _STRICT) and not exempt
  dtype = "strict" if strict else "standard"
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
