"""The tokens a served request used, read from what the engine answered (pure).

An answer that is not streamed carries OpenAI's ``usage`` object (vLLM always sends it).
A stream carries one only when the client asked for it (``stream_options.include_usage``:
a last chunk with empty ``choices`` and ``usage``; with ``continuous_usage_stats`` every
chunk has a running total, so the last one counts). A stream without it is counted as
one completion token per event that carries one — vLLM sends one event per decode step,
after a chat stream's first event, which names the role only — so this undercounts only
where a step carries several tokens (speculative decoding, a ``--stream-interval`` above
1); its prompt is the router's estimate.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

_DATA = b"data:"
_DONE = b"[DONE]"


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """Prompt and completion tokens of one request; ``reported`` False when estimated."""

    prompt_tokens: int
    completion_tokens: int
    reported: bool = True


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _from_document(document: object) -> Usage | None:
    usage = document.get("usage") if isinstance(document, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    if prompt is None:
        return None
    return Usage(prompt, _count(usage.get("completion_tokens")) or 0)


def from_body(body: bytes) -> Usage | None:
    """The ``usage`` of a JSON answer, or None when it has none (or is not JSON)."""
    try:
        return _from_document(json.loads(body))
    except ValueError:
        return None


def from_stream_tail(chunks: Iterable[bytes]) -> Usage | None:
    """The last ``usage`` among the SSE events of a stream's last chunks, or None.

    ``chunks`` are the stream's final reads, in order; an event cut at their start is
    skipped (the usage event is the last before ``[DONE]``, so it is whole in them).
    """
    found = None
    for line in b"".join(chunks).split(b"\n"):
        payload = line.strip()
        if not payload.startswith(_DATA):
            continue
        payload = payload[len(_DATA) :].strip()
        if payload == _DONE or b'"usage"' not in payload:
            continue
        try:
            found = _from_document(json.loads(payload)) or found
        except ValueError:
            continue
    return found


def estimated(*, events: int, prompt_estimate: int, chat: bool) -> Usage:
    """A stream without usage: one completion token per event but ``[DONE]`` and a chat
    stream's role event, the prompt as the router estimated it."""
    return Usage(prompt_estimate, max(0, events - 1 - int(chat)), reported=False)
