"""No API key or prompt text in the router's logs, whoever logs.

The router's own code never logs a key or a prompt; libraries can. aiohttp logs a
malformed request at ERROR with the offending bytes — an ``Authorization`` header over
its 8,190-byte line limit appears whole, key included — and an exception raised while
reading a body can quote it. ``Redactor`` rewrites every record it sees: the message
and any traceback pass through ``redact`` (``Authorization`` credentials of any scheme —
``Bearer``, ``Basic``, ``Token``, ``Digest`` … — and Bearer, Basic and Token credentials
wherever they appear, ``sk-`` keys, values of key-like fields), and the exception of a
record about a malformed request is reduced to its type, since its text holds request
bytes no pattern can tell from a prompt.
Structured ``fields`` (``gpufleet.logsetup``'s JSON) get the same rewriting.
``install`` puts it on the root logger's handlers (every record this process writes)
and on the loggers that carry request data (so records also reach other handlers, such
as a test's, already redacted).
"""

from __future__ import annotations

import logging
import re

from aiohttp import http_exceptions

LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.client", "asyncio",
           "gpufleet", "gpufleet.router")  # fmt: skip
_VALUE = r"[^\s'\",;]+"
# Schemes of the Authorization header (RFC 9110 and what APIs use) whose credential
# follows a space: after an Authorization field the credential goes, the scheme stays.
_SCHEMES = r"(?:bearer|basic|token|digest|negotiate|apikey|api-key)\s+"
# A Basic or Token credential outside a header: eight or more characters with a digit, a
# symbol or an inner capital (base64 of user:pass has them), so prose such as "token
# budget" or "basic functionality" stays as written.
_CREDENTIAL = r"(?=[^\s'\",;]{8})(?=[^\s'\",;]*(?:[0-9+/=_.~-]|[a-z][A-Z]))" + _VALUE
_PATTERNS = (
    (
        re.compile(r"(?i)\b(authorization|proxy-authorization)([\"']?\s*[:=]\s*[\"']?)"
                   rf"({_SCHEMES})?{_VALUE}"),
        r"\1\2\3[redacted]",
    ),
    (re.compile(rf"(?i)\bbearer\s+{_VALUE}"), "Bearer [redacted]"),
    (re.compile(rf"(?i:\b(basic|token))\s+{_CREDENTIAL}"), r"\1 [redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"), "sk-[redacted]"),
    (
        re.compile(r"(?i)\b(api[-_]?key|x-api-key|password|secret|token)"
                   rf"([\"']?\s*[:=]\s*[\"']?)({_SCHEMES})?{_VALUE}"),
        r"\1\2\3[redacted]",
    ),
)  # fmt: skip
_WITHHELD = "details withheld: they quote the request, which may hold a key or a prompt"


def redact(text: str) -> str:
    """``text`` with credentials (Authorization values of any scheme, Bearer, Basic and
    Token credentials), ``sk-`` keys and key-like field values replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redactor(logging.Filter):
    """Rewrites a record in place (its message, exception and stack) and keeps it."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        record.msg, record.args = redact(record.getMessage()), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            record.exc_text = (
                f"{type(exc).__module__}.{type(exc).__qualname__} ({_WITHHELD})"
                if isinstance(exc, http_exceptions.HttpProcessingError)
                else redact(self._formatter.formatException(record.exc_info))  # type: ignore[arg-type]
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        setattr(record, "_redacted", True)  # noqa: B010 (LogRecord declares no such field)
        return True


def install(root: logging.Logger | None = None) -> Redactor:
    """Put one ``Redactor`` on ``root``'s handlers (default: the root logger's) and on
    ``LOGGERS``; returns it."""
    redactor = Redactor()
    for handler in (root or logging.getLogger()).handlers:
        handler.addFilter(redactor)
    for name in LOGGERS:
        logging.getLogger(name).addFilter(redactor)
    return redactor
