"""How gpufleet's long-running commands log: ``--log-level`` and ``--log-format text|json``.

Every record carries its level, its logger's name and, while a request is being served,
that request's id (``REQUEST_ID``, set by the router for the task serving the request).
``text`` is one line a record: ``2026-12-01T15:04:05.123Z INFO gpufleet.router
request_id=ab12…: request model=… status=200``. ``json`` is one JSON object a record with
``time``, ``level``, ``logger``, ``message``, ``request_id`` when there is one, the
structured ``fields`` a call passed (``extra={"fields": {...}}``) and ``exception``.
Nothing here decides what is logged; the router's redaction filter still applies.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# A context variable, not shared state: each asyncio task serving a request sees its own.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def add_arguments(parser: argparse.ArgumentParser, *, level: str = "INFO") -> None:
    """``--log-level`` (default ``level``) and ``--log-format``."""
    parser.add_argument(
        "--log-level", default=level, type=str.upper, choices=LEVELS, help="least severe level"
    )
    parser.add_argument(
        "--log-format", default="text", choices=FORMATS, help="one line of text or JSON a record"
    )


def configure(*, level: str, fmt: str = "text") -> logging.Handler:
    """One stderr handler on the root logger, in ``fmt``, at ``level``; returns it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    return handler


def kv(fields: Mapping[str, object]) -> str:
    """``k=v`` pairs for a text message, values with spaces quoted, empty ones left out."""
    pairs = (f"{k}={_text(v)}" for k, v in fields.items() if v not in ("", None))
    return " ".join(pairs)


def _text(value: object) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return json.dumps(text) if " " in text or not text else text


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` (from ``REQUEST_ID``; empty outside a request) on a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request_id=…]: message``, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "")
        where = f" request_id={request_id}" if request_id else ""
        line = f"{_timestamp(record)} {record.levelname} {record.name}{where}: "
        line += record.getMessage()
        trace = _exception(self, record)
        return f"{line}\n{trace}" if trace else line


class JsonFormatter(logging.Formatter):
    """One JSON object a record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            document["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            document["fields"] = dict(fields)
        trace = _exception(self, record)
        if trace:
            document["exception"] = trace
        return json.dumps(document, default=str)


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback: its exception formatted, or the text a filter left."""
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return record.exc_text or ""
