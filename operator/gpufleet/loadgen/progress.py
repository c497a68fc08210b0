"""The load generator's progress: a rich bar on a terminal, plain lines anywhere else.

``shown`` yields the ``progress(done, total)`` callback ``client.replay`` takes. When the
stream is a terminal (``isatty``) it draws a rich bar with the count and the time spent
and left; into a pipe, a file or a CI log it writes ``done/total requests done`` at every
tenth of the run and at the end, never a carriage return or an escape sequence — also
where ``FORCE_COLOR`` is set, which rich alone would take for a terminal.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from rich import console, progress

Report = Callable[[int, int], None]


def plain(stream: TextIO) -> Report:
    """One line at every tenth of ``total`` and at the end."""

    def report(done: int, total: int) -> None:
        step = max(1, total // 10)
        if done % step == 0 or done == total:
            print(f"{done}/{total} requests done", file=stream, flush=True)

    return report


@contextlib.contextmanager
def shown(*, quiet: bool = False, stream: TextIO | None = None) -> Iterator[Report | None]:
    """The callback for this run (None with ``quiet``); a bar is closed on leaving."""
    if quiet:
        yield None
        return
    where = stream or sys.stderr
    if not where.isatty():
        yield plain(where)
        return
    out = console.Console(file=where, force_terminal=True)
    columns = (
        *progress.Progress.get_default_columns(),
        progress.MofNCompleteColumn(),
    )
    with progress.Progress(*columns, console=out) as bar:
        task = bar.add_task("requests", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report
