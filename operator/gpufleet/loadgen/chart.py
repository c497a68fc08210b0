"""The PNG chart of one load run: TTFT over time by class, and latency distributions.

matplotlib is the optional extra ``gpufleet[chart]`` (about 170 MB; the images leave it
out), so it is imported when a chart is drawn and ``available`` says whether it can be.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from gpufleet.loadgen.report import Result

MISSING = "matplotlib is not installed (pip install 'gpufleet[chart]')"


def available() -> bool:
    """Whether matplotlib can be imported here."""
    return importlib.util.find_spec("matplotlib") is not None


def draw(results: Sequence[Result], path: Path, *, title: str) -> None:
    """Write a two-panel PNG of ``results`` to ``path`` (``ModuleNotFoundError`` without
    matplotlib: ask ``available`` first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for klass in sorted({r.klass for r in results}):
        mine = [r for r in results if r.klass == klass and r.ttft_s is not None]
        left.scatter([r.sent_s for r in mine], [r.ttft_s or 0.0 for r in mine], s=6, label=klass)
    failed = [r for r in results if not r.ok]
    if failed:
        left.scatter([r.sent_s for r in failed], [0.0] * len(failed), marker="x", c="red",
                     label="error")  # fmt: skip
    left.set_xlabel("sent at (s)")
    left.set_ylabel("time to first token (s)")
    left.legend()
    for name, values in (
        ("TTFT", [r.ttft_s for r in results if r.ok and r.ttft_s is not None]),
        ("E2E", [r.e2e_s for r in results if r.ok and r.e2e_s is not None]),
    ):
        ordered = sorted(values)
        if ordered:
            right.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=name)
    right.set_xscale("log")
    right.set_xlabel("seconds")
    right.set_ylabel("share of requests")
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
