"""docs/errors.md and the tests agree: every catalogue entry has a section in the doc that shows
the asserted message, and a test that uses it."""

from __future__ import annotations

import glob
import os
import re

from tests.multihost_utils import ROOT
from tests.reliability.catalogue import CATALOGUE

DOC = os.path.join(ROOT, "docs", "errors.md")


def _sections() -> dict[str, str]:
  text = open(DOC).read()
  parts = re.split(r"^### ", text, flags=re.M)[1:]
  return {part.split(" ", 1)[0]: part.split("\n## ")[0] for part in parts}


def test_the_doc_shows_every_entry_with_its_message():
  sections = _sections()
  assert sorted(sections) == sorted(CATALOGUE), set(sections) ^ set(CATALOGUE)
  for entry, fragment in CATALOGUE.items():
    assert fragment in sections[entry], f"docs/errors.md {entry} lacks {fragment!r}"
  assert len(CATALOGUE) >= 30


def test_every_entry_is_tested():
  sources = ""
  # Most entries are tested in tests/reliability/; the text ones (TX*) next to their feature.
  for path in glob.glob(os.path.join(ROOT, "tests", "**", "test_*.py"), recursive=True):
    if not path.endswith("test_catalogue.py"):
      sources += open(path).read()
  untested = [e for e in CATALOGUE
              if not re.search(rf'["_]{e}["_]', sources) and f'CATALOGUE["{e}"]' not in sources]
  assert not untested, untested
