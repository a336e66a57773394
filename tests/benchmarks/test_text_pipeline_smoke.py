"""Smoke test: benchmarks/text_pipeline.py runs end to end at tiny sizes and prints its table."""

import pytest

from benchmarks import text_pipeline


@pytest.mark.slow
def test_text_pipeline_quick_prints_the_padding_table():
  text = text_pipeline.main(["--quick", "--seconds", "0.5"])
  assert "| buckets |" in text and "| fixed |" in text and "non-pad fraction" in text
