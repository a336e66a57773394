"""docs/trax.md cannot rot: every "same name" in its census exists in declax, every Trax name
is listed, and its code blocks run."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "trax.md"
TRAX = ROOT / ".." / "trax-src" / "trax"
FIXTURES = ROOT / ".." / "shared" / "trax_checkpoints"


def _rows() -> list[tuple[str, str, str]]:
  rows = re.findall(r"^\| `([^`]+)` \| (same|replaced|missing) \| (.*) \|$", DOC.read_text(),
                    flags=re.M)
  assert len(rows) > 300, "the census section of docs/trax.md is missing"
  return rows


def test_every_same_name_exists_in_declax():
  absent = []
  for name, kind, text in _rows():
    if kind != "same":
      continue
    target = re.fullmatch(r"`([\w.]+)\.(\w+)`", text.strip())
    assert target and target.group(2) == name, f"bad row for {name}: {text}"
    if not hasattr(importlib.import_module(target.group(1)), name):
      absent.append(f"{target.group(1)}.{name}")
  assert not absent, f"docs/trax.md lists as 'same name' but declax lacks: {absent}"


def test_replacements_and_missing_rows_say_what_to_use():
  for name, kind, text in _rows():
    if kind != "same":
      assert text.strip(), f"{name} ({kind}) has no counterpart or reason"


@pytest.mark.skipif(not TRAX.is_dir(), reason=f"Trax's source not found at {TRAX}")
def test_every_public_trax_name_is_listed():
  sys.path.insert(0, str(ROOT / "scripts"))
  try:
    census = importlib.import_module("trax_census")
  finally:
    sys.path.pop(0)
  listed = {name for name, _, _ in _rows()}
  for package in census.PACKAGES:
    missing = set(census.trax_names(str(TRAX), package)) - listed
    assert not missing, f"trax.{package} names absent from docs/trax.md: {sorted(missing)}"


@pytest.mark.slow
@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"Trax fixtures not found at {FIXTURES}")
def test_code_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
  assert len(blocks) >= 3
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  for block in blocks:
    result = subprocess.run([sys.executable, "-c", block], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{block}\n{result.stderr[-2000:]}"
