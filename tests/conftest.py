"""Test-wide settings: one CPU device here; multi-device tests run in subprocesses with
XLA_FLAGS set before JAX starts (see tests/test_sharding.py)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
