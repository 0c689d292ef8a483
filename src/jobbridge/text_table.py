"""Plain-text tables, as the command line prints them (and a remote host renders them)."""

from __future__ import annotations

from collections.abc import Sequence


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The header and rows in left-aligned columns, one line each (no trailing newline)."""
    cells = [header, *rows]
    widths = [max(len(one_line(row[i])) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(one_line(cell).ljust(width)
                               for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def one_line(text: str) -> str:
    """A cell on one line: newlines and tabs shown escaped."""
    return text.replace("\n", "\\n").replace("\t", "\\t")
