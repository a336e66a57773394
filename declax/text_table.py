"""Plain-text tables for summaries (no dependency on a rich-text library)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """Left-aligned columns separated by two spaces, with a dashed rule under the header."""
  table = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
           for row in table]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)
