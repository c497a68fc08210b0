"""A request's identity for logs and traces: ``x-request-id`` and W3C Trace Context.

Pure. ``of(headers)`` keeps a client's ``x-request-id`` when it is a plain token (1-128
characters of letters, digits and ``._:/+=-``; anything else could smuggle text into
logs and upstream headers) and otherwise makes one. A valid ``traceparent``
(https://www.w3.org/TR/trace-context/#traceparent-header) is forwarded unchanged with
its ``tracestate``; an absent or invalid one starts a new trace (sampled, so a model
server that traces keeps its spans). The router records no spans of its own.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable, Mapping

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TRACESTATE_MAX = 512

Token = Callable[[int], str]


@dataclasses.dataclass(frozen=True, slots=True)
class Trace:
    request_id: str
    traceparent: str
    tracestate: str | None = None

    def upstream_headers(self) -> dict[str, str]:
        """The headers every upstream attempt of the request carries."""
        headers = {"x-request-id": self.request_id, "traceparent": self.traceparent}
        if self.tracestate:
            headers["tracestate"] = self.tracestate
        return headers


def of(headers: Mapping[str, str], *, token: Token = secrets.token_hex) -> Trace:
    """The request's identity from its headers; ``token(n)`` makes n random bytes' hex."""
    request_id = headers.get("x-request-id", "")
    if not _REQUEST_ID.fullmatch(request_id):
        request_id = token(16)
    parent = headers.get("traceparent", "").strip()
    if valid_traceparent(parent):
        state = headers.get("tracestate")
        kept = state if state and len(state) <= _TRACESTATE_MAX and state.isprintable() else None
        return Trace(request_id, parent, kept)
    return Trace(request_id, f"00-{token(16)}-{token(8)}-01")


def valid_traceparent(value: str) -> bool:
    """A traceparent this router may forward: version 00 exactly, a later version with
    its first four fields well formed; never version ff or an all-zero id."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return False
    return trace_id != "0" * 32 and parent_id != "0" * 16
