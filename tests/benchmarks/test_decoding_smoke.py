"""Smoke test: benchmarks/decoding.py runs end to end at tiny sizes and prints its table."""

import pytest

from benchmarks import decoding


@pytest.mark.slow
def test_decoding_benchmark_quick_prints_both_columns():
  text = decoding.main(["--quick"])
  assert "tokens/s with cache" in text and "beam search" in text
  assert "| greedy stream, one call per token |" in text
