"""Per-request results and their summary: percentiles, throughput, goodput (pure).

Goodput is the share, and the rate per second, of requests that succeeded *and* met
their class's SLO (``trace.Slo``): TTFT, time per output token and end-to-end bounds.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from gpufleet.loadgen.trace import Slo


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """One replayed request. ``status`` 0 means no HTTP response (connection error)."""

    index: int
    klass: str
    tenant: str
    sent_s: float
    status: int
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    output_tokens: int = 0
    error: str = ""
    gpu: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def meets(result: Result, slo: Slo) -> bool:
    """Whether a successful ``result`` is within every bound of ``slo``."""
    checks = ((slo.ttft_s, result.ttft_s), (slo.tpot_s, result.tpot_s), (slo.e2e_s, result.e2e_s))
    return result.ok and all(bound <= 0 or (v is not None and v <= bound) for bound, v in checks)


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {f"p{q}": percentile(values, q) for q in (50, 90, 99)}


def summarize(
    results: Sequence[Result], *, slos: Mapping[str, Slo], duration_s: float
) -> dict[str, object]:
    """The figures ``gpufleet bench load`` prints and writes."""
    ok = [r for r in results if r.ok]
    good = [r for r in ok if meets(r, slos.get(r.klass, Slo()))]
    duration = max(duration_s, 1e-9)
    per_class = {
        klass: {
            "requests": sum(1 for r in results if r.klass == klass),
            "goodput_share": _share([r for r in good if r.klass == klass],
                                    [r for r in results if r.klass == klass]),
        }
        for klass in sorted({r.klass for r in results})
    }  # fmt: skip
    return {
        "requests": len(results),
        "succeeded": len(ok),
        "errors": dict(
            Counter(str(r.status) if not r.error else r.error[:60] for r in results if not r.ok)
        ),
        "duration_s": duration_s,
        "ttft_s": _stats([r.ttft_s for r in ok if r.ttft_s is not None]),
        "tpot_s": _stats([r.tpot_s for r in ok if r.tpot_s is not None]),
        "e2e_s": _stats([r.e2e_s for r in ok if r.e2e_s is not None]),
        "output_tokens_per_s": sum(r.output_tokens for r in ok) / duration,
        "requests_per_s": len(ok) / duration,
        "goodput_share": _share(good, results),
        "goodput_per_s": len(good) / duration,
        "classes": per_class,
        "generations": generations(ok),
    }


def generations(ok: Sequence[Result]) -> dict[str, dict[str, float]]:
    """Share of requests and of output tokens per GPU generation (from the router's
    ``x-gpufleet-gpu`` header); empty when no response named one."""
    named = [r for r in ok if r.gpu]
    tokens = sum(r.output_tokens for r in named) or 1
    return {
        gpu: {
            "requests": sum(1 for r in named if r.gpu == gpu),
            "request_share": sum(1 for r in named if r.gpu == gpu) / len(named),
            "output_tokens": sum(r.output_tokens for r in named if r.gpu == gpu),
            "token_share": sum(r.output_tokens for r in named if r.gpu == gpu) / tokens,
        }
        for gpu in sorted({r.gpu for r in named})
    }


def generations_served(
    served: Mapping[str, Mapping[str, Mapping[str, int]]],
) -> dict[str, dict[str, object]]:
    """``generations``' shape from a router's ``/stats`` ``served`` table (class ->
    generation -> requests and completion tokens), each generation with its classes:
    what the router itself counted, for clients that get no ``x-gpufleet-gpu`` header."""
    rows: dict[str, dict[str, int]] = {}
    by_class: dict[str, dict[str, dict[str, int]]] = {}
    for klass, per_gpu in served.items():
        for gpu, counts in per_gpu.items():
            row = rows.setdefault(gpu, {"requests": 0, "output_tokens": 0})
            row["requests"] += counts["requests"]
            row["output_tokens"] += counts["completion_tokens"]
            by_class.setdefault(gpu, {})[klass] = {
                "requests": counts["requests"],
                "output_tokens": counts["completion_tokens"],
            }
    requests = sum(r["requests"] for r in rows.values()) or 1
    tokens = sum(r["output_tokens"] for r in rows.values()) or 1
    return {
        gpu: {**row, "request_share": row["requests"] / requests,
              "token_share": row["output_tokens"] / tokens, "classes": by_class[gpu]}
        for gpu, row in sorted(rows.items())
    }  # fmt: skip


def _share(part: Sequence[Result], whole: Sequence[Result]) -> float:
    return len(part) / len(whole) if whole else 0.0


def render(summary: Mapping[str, object]) -> str:
    """A short human-readable report of ``summarize``'s output."""
    lines = [
        f"requests {summary['requests']}  succeeded {summary['succeeded']}  "
        f"errors {summary['errors'] or 'none'}",
    ]
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        stats = summary[key]
        assert isinstance(stats, dict)
        cells = "  ".join(f"{q} {_ms(v)}" for q, v in stats.items())
        lines.append(f"{key[:-2].upper():5s} {cells}")
    lines.append(
        f"throughput {summary['output_tokens_per_s']:.1f} tok/s  "
        f"{summary['requests_per_s']:.2f} req/s  goodput {summary['goodput_share']:.1%} "
        f"({summary['goodput_per_s']:.2f} req/s)"
    )
    shares = summary.get("generations") or {}
    assert isinstance(shares, dict)
    return "\n".join(lines + render_generations(shares))


def render_generations(shares: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per GPU generation: its shares of requests and output tokens, and the
    requests of each class when known."""
    lines = []
    for gpu, share in shares.items():
        classes = share.get("classes") or {}
        split = ", ".join(f"{k} {v['requests']}" for k, v in sorted(classes.items()))
        lines.append(
            f"  {gpu:<10} {share['request_share']:6.1%} of requests  "
            f"{share['token_share']:6.1%} of output tokens" + (f"  ({split})" if split else "")
        )
    return lines


def _ms(value: object) -> str:
    return "-" if not isinstance(value, float) else f"{value * 1000:.0f}ms"
