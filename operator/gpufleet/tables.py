"""Tables for people: drawn by rich on a terminal, aligned plain text anywhere else.

``aligned`` is the plain form (pure): columns padded to their widest cell, two spaces
apart, no trailing blanks. ``show`` picks the form by whether the stream is a terminal
(``isatty``), so a pipe, a file or a CI log gets lines that ``grep``, ``awk`` and ``cut``
read, and never an escape sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from rich import box, console, table

Row = Sequence[str]


def aligned(rows: Sequence[Row], *, indent: str = "") -> list[str]:
    """``rows`` (the first is the header) as padded lines, each after ``indent``."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    padded = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return [(indent + line).rstrip() for line in padded]


def show(rows: Sequence[Row], *, stream: TextIO) -> None:
    """Write ``rows`` (the first is the header): a rich table on a terminal, else
    ``aligned``'s lines."""
    if not stream.isatty():
        stream.write("".join(line + "\n" for line in aligned(rows)))
        return
    drawn = table.Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in rows[0] if rows else ():
        drawn.add_column(header, no_wrap=True)
    for row in rows[1:]:
        drawn.add_row(*row)
    console.Console(file=stream, force_terminal=True).print(drawn)
