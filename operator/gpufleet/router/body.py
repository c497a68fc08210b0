"""Incoming request bodies: parsed once, checked, and reduced to what routing needs.

The body is forwarded upstream as received (re-encoded only when a model alias is
rewritten), so unknown fields pass through untouched. ``parse`` raises ``BadRequest``
naming the field at fault; it never puts prompt text in a message. JSON nested deeper
than Python's decoder can recurse is a ``BadRequest`` too, not a crash.

``n`` (completions per prompt, 1 to ``MAX_CHOICES``) is checked for generation
requests; embeddings always count as one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

from gpufleet.router.errors import BadRequest

Kind = Literal["chat", "completion", "embedding"]
_REQUIRED: dict[Kind, str] = {"chat": "messages", "completion": "prompt", "embedding": "input"}
# OpenAI's own limit on ``n``; each choice decodes on its own, so n multiplies the cost.
MAX_CHOICES = 128
_TOO_DEEP = "the request body nests JSON too deeply"


@dataclasses.dataclass(frozen=True, slots=True)
class Parsed:
    """A checked request: ``text`` is the prompt for estimation and affinity only."""

    kind: Kind
    model: str
    document: dict[str, object]
    raw: bytes
    text: str
    max_tokens: int | None
    stream: bool
    n: int = 1


def parse(kind: Kind, raw: bytes, *, max_tokens_limit: int) -> Parsed:
    """Check ``raw`` as an OpenAI request of ``kind``."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the request body is not valid JSON") from exc
    except RecursionError:
        raise BadRequest(_TOO_DEEP) from None
    if not isinstance(document, dict):
        raise BadRequest("the request body must be a JSON object")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required and must be a non-empty string", param="model")
    field = _REQUIRED[kind]
    if field not in document or document[field] in (None, "", []):
        raise BadRequest(f"{field} is required", param=field)
    stream = document.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    return Parsed(
        kind=kind,
        model=model,
        document=document,
        raw=raw,
        text=_text(kind, document[field]),
        max_tokens=_max_tokens(document, max_tokens_limit),
        stream=stream,
        n=1 if kind == "embedding" else _choices(document),
    )


def _choices(document: dict[str, object]) -> int:
    value = document.get("n")
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHOICES:
        raise BadRequest(f"n must be an integer between 1 and {MAX_CHOICES}", param="n")
    return value


def _max_tokens(document: dict[str, object], limit: int) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = document.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{name} must be an integer", param=name)
        if not 1 <= value <= limit:
            raise BadRequest(f"{name} must be between 1 and {limit}", param=name)
        return value
    return None


def _text(kind: Kind, value: object) -> str:
    if kind == "chat":
        if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            raise BadRequest("messages must be a list of message objects", param="messages")
        return "".join(_content(m.get("content")) for m in value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # Token-id prompts count one token per id: a 4-character stand-in per id.
        return "".join(v if isinstance(v, str) else "xxxx" for v in value)
    raise BadRequest(f"{_REQUIRED[kind]} must be a string or a list", param=_REQUIRED[kind])


def _content(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def with_model(parsed: Parsed, model: str) -> bytes:
    """The body to forward when it must name ``model`` instead of the client's."""
    if model == parsed.model:
        return parsed.raw
    try:
        return json.dumps({**parsed.document, "model": model}).encode()
    except RecursionError:
        raise BadRequest(_TOO_DEEP) from None
