"""Bounded polling for tests that wait on a real system to converge."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(
    what: str, probe: Callable[[], Any], *, timeout: float = 60.0, every: float = 0.25
) -> Any:
    """``probe()``'s first truthy value, polled every ``every`` s; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
