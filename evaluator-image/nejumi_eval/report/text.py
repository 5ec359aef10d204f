"""Plain text for the terminal: tables and JSON documents (no dependency: `nejumi-eval list` must
stay light)."""

from __future__ import annotations

import json
from collections.abc import Sequence


def print_json(doc: object) -> None:
    """A JSON document as the CLI prints it: indented, Japanese left readable."""
    print(json.dumps(doc, ensure_ascii=False, indent=2))


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()
) -> list[str]:
    """Fixed-width columns, two spaces apart; the columns numbered in `right` are right-aligned."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return lines
