"""Tables: aligned plain lines into a pipe, a drawn table on a terminal."""

from __future__ import annotations

import io

from gpufleet import tables

ROWS = [("GPU", "FITS", "TP"), ("H100-80GB", "yes", "4"), ("L4", "no", "-")]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_aligned_pads_columns_and_strips_the_line_ends() -> None:
    assert tables.aligned(ROWS, indent="  ") == [
        "  GPU        FITS  TP",
        "  H100-80GB  yes   4",
        "  L4         no    -",
    ]
    assert tables.aligned([]) == []


def test_into_a_pipe_the_aligned_lines() -> None:
    out = io.StringIO()
    tables.show(ROWS, stream=out)
    assert out.getvalue() == "\n".join(tables.aligned(ROWS)) + "\n"


def test_on_a_terminal_a_drawn_table() -> None:
    out = _Terminal()
    tables.show(ROWS, stream=out)
    drawn = out.getvalue()
    assert "\x1b[" in drawn and "─" in drawn
    assert "H100-80GB" in drawn and "yes" in drawn
