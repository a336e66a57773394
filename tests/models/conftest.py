"""Model tests compile many small XLA programs on a busy 2-core CPU: most XLA optimizations are
switched off for the fast tests (compiling ~3x faster; the numerics do not depend on them). The
slow, end-to-end training runs keep them on."""

import jax
import pytest


@pytest.fixture(autouse=True)
def _fast_compiles(request):
  if request.node.get_closest_marker("slow"):
    yield
    return
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", previous)
