"""The load generator's progress: plain lines into a pipe (no carriage returns, no
escape sequences), a bar on a terminal, nothing when quiet."""

from __future__ import annotations

import io

import pytest

from gpufleet.loadgen import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream: io.StringIO, total: int = 20) -> None:
    with progress.shown(stream=stream) as report:
        assert report is not None
        for done in range(1, total + 1):
            report(done, total)


def test_into_a_pipe_a_line_every_tenth_and_no_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # as some CI runners set it
    out = io.StringIO()
    _run(out)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines() == [f"{n}/20 requests done" for n in range(2, 21, 2)]


def test_on_a_terminal_a_bar() -> None:
    out = _Terminal()
    _run(out)
    assert "20/20" in out.getvalue() and "requests done" not in out.getvalue()


def test_quiet_shows_nothing() -> None:
    with progress.shown(quiet=True) as report:
        assert report is None
