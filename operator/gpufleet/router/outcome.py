"""What became of one request, for metrics, accounting and the access log.

The request pipeline fills it in as the request goes (``pipeline``, and each attempt's
``attempt.Watch``); the handler and the accounting read it when the request ends
(``handlers``, ``spending``). It lives apart from all of them so that the accounting
needs nothing of the pipeline, and the proxy knows nothing of it.
"""

from __future__ import annotations

import dataclasses

from gpufleet.router import usage
from gpufleet.routing import accounting, picker

# What a client that went away before any answer is counted as (nginx's "client closed
# request"): no status was sent.
CLIENT_CLOSED = 499


@dataclasses.dataclass(slots=True)
class Outcome:
    """What happened, for metrics: ``label`` is the outcome, ``decision`` the endpoint
    chosen last (None when none was), ``status`` the HTTP status sent (None until one
    is), ``usage`` the tokens a served request used, ``started`` its arrival (router
    clock), ``attempt`` the timing of the last attempt that got an answer."""

    label: str = "success"
    decision: picker.Decision | None = None
    status: int | None = None
    usage: usage.Usage | None = None
    started: float = 0.0
    attempt: accounting.Attempt | None = None
    slo_told: bool = False  # a late first token already steered the class's tightening

    def code(self) -> int:
        """The status answered: 499 for a client gone before one, 500 for a failure."""
        if self.status is not None:
            return self.status
        return CLIENT_CLOSED if self.label == "cancelled" else 500
