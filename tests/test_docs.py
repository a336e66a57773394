"""Every python block of README.md and docs/*.md runs, so the examples cannot rot.

The blocks of one page run in order in one namespace (a page reads as one session). A block that
is deliberately a fragment is marked by the line `<!-- fragment: why -->` right above its fence
and skipped; the test counts them so a page cannot skip silently.
"""

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"(?P<mark><!-- fragment:[^>]*-->\n)?```python\n(?P<code>.*?)```", re.S)


def blocks(page: pathlib.Path) -> tuple[list[str], int]:
  """The page's runnable python blocks and the number of blocks marked as fragments."""
  found = list(FENCE.finditer(page.read_text()))
  return [m["code"] for m in found if not m["mark"]], sum(bool(m["mark"]) for m in found)


def test_pages_have_blocks_and_few_fragments():
  counts = {p.name: blocks(p) for p in PAGES}
  assert sum(len(run) for run, _ in counts.values()) >= 15
  for name, (run, skipped) in counts.items():
    assert skipped <= len(run) + 1, f"{name}: more fragments than runnable blocks"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_blocks_run(page, tmp_path):
  run, _ = blocks(page)
  if not run:
    pytest.skip(f"{page.name} has no python blocks")
  shared = ROOT.parent / "shared" / "trax_checkpoints"
  if any("../shared/trax_checkpoints" in code for code in run) and not shared.is_dir():
    pytest.skip(f"{page.name} reads Trax's checkpoints from {shared}, which is absent here")
  script = "\n".join(f"# --- block {i}\n{textwrap.dedent(code)}" for i, code in enumerate(run))
  (tmp_path / "page.py").write_text(script)
  result = subprocess.run([sys.executable, str(tmp_path / "page.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
  assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"
