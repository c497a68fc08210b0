"""Why this endpoint: a cost-strategy decision's judged candidates as a response header
(``x-gpufleet-decision``, with ``debugHeaders: true``) and a sampled INFO log line.

Each candidate: its endpoint and generation, each weighted scorer's value in [0, 1]
and their weighted sum, the predicted TTFT and TPOT (ms) for this request, its price
per million tokens (None when unpriced) and whether it was predicted to meet the
class's SLO. The log takes the first decision and then every ``LOG_EVERY``-th, so a
busy router's log stays readable.
"""

from __future__ import annotations

import json
import logging

from gpufleet.routing import picker

log = logging.getLogger("gpufleet.router.decisions")
HEADER = "x-gpufleet-decision"
LOG_EVERY = 100


def document(decision: picker.Decision, *, objective: str) -> dict[str, object]:
    return {
        "objective": objective,
        "chosen": decision.endpoint.id,
        "candidates": [_candidate(c) for c in decision.considered],
    }


def _candidate(considered: picker.Considered) -> dict[str, object]:
    p = considered.prediction
    dollars = p.dollars_per_million
    return {
        "endpoint": considered.endpoint.id,
        "gpu": considered.endpoint.gpu,
        "scores": {k: round(v, 4) for k, v in considered.scores.items()},
        "total": round(considered.total, 4),
        "ttftMs": round(p.ttft_s * 1000, 1),
        "tpotMs": round(p.tpot_s * 1000, 2),
        "dollarsPerMillionTokens": None if dollars is None else round(dollars, 4),
        "meetsSlo": p.meets_slo,
    }


def header(decision: picker.Decision, *, objective: str) -> dict[str, str]:
    """The header for a decision that was explained; none otherwise."""
    if not decision.considered:
        return {}
    return {HEADER: json.dumps(document(decision, objective=objective), separators=(",", ":"))}


def sample(decision: picker.Decision, *, objective: str, turn: int) -> None:
    """Log the decision when it is one of the sampled ones."""
    if decision.considered and turn % LOG_EVERY == 1:
        fields = document(decision, objective=objective)
        log.info("decision %s", json.dumps(fields, separators=(",", ":")))
