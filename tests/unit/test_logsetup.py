"""Log lines: level, logger and request id in text or JSON; structured fields; a
traceback kept after the router's redaction; every circuit change heard once."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import pytest

from gpufleet import logsetup
from gpufleet.api.runtime import CircuitBreaker
from gpufleet.router import redaction
from gpufleet.routing import breaker


def _record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gpufleet.router", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _filtered(record: logging.LogRecord, request_id: str = "") -> logging.LogRecord:
    token = logsetup.REQUEST_ID.set(request_id)
    try:
        logsetup.RequestIdFilter().filter(record)
    finally:
        logsetup.REQUEST_ID.reset(token)
    return record


def test_text_has_time_level_logger_and_request_id() -> None:
    line = logsetup.TextFormatter().format(_filtered(_record("hello %s", "you"), "req-1"))
    stamp, level, logger, rest = line.split(" ", 3)
    assert stamp.endswith("Z") and "T" in stamp
    assert (level, logger, rest) == ("INFO", "gpufleet.router", "request_id=req-1: hello you")
    plain = logsetup.TextFormatter().format(_filtered(_record("x")))
    assert plain.endswith("INFO gpufleet.router: x")


def test_json_has_the_same_and_the_fields() -> None:
    fields = {"status": 200, "model": "m"}
    record = _filtered(_record("request %s", "status=200", fields=fields), "req-2")
    document = json.loads(logsetup.JsonFormatter().format(record))
    assert document["level"] == "INFO" and document["logger"] == "gpufleet.router"
    assert document["message"] == "request status=200" and document["request_id"] == "req-2"
    assert document["fields"] == fields
    assert "request_id" not in json.loads(logsetup.JsonFormatter().format(_filtered(_record())))


def test_a_redacted_traceback_is_still_written() -> None:
    try:
        raise ValueError("Authorization: Bearer sk-abcdefgh1234")
    except ValueError:
        record = logging.LogRecord("gpufleet.router", logging.ERROR, __file__, 1, "failed",
                                   (), sys.exc_info())  # fmt: skip
    redaction.Redactor().filter(record)
    document = json.loads(logsetup.JsonFormatter().format(_filtered(record)))
    assert "ValueError" in document["exception"] and "sk-abcdefgh1234" not in document["exception"]


def test_fields_are_redacted_too() -> None:
    record = _record("request", fields={"model": "Bearer sk-abcdefgh1234", "status": 401})
    redaction.Redactor().filter(record)
    assert record.fields == {"model": "Bearer [redacted]", "status": 401}


def test_kv_quotes_spaces_and_leaves_out_empty_values() -> None:
    fields = {"model": "m", "tenant": "", "note": "a b", "seconds": 0.12345, "status": 200}
    assert logsetup.kv(fields) == 'model=m note="a b" seconds=0.123 status=200'


def test_flags_take_any_case_and_refuse_other_formats() -> None:
    parser = argparse.ArgumentParser()
    logsetup.add_arguments(parser, level="WARNING")
    args = parser.parse_args(["--log-level", "debug", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("DEBUG", "json")
    assert parser.parse_args([]).log_level == "WARNING"
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "xml"])


def test_configure_writes_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logsetup.configure(level="info", fmt="json")
        logging.getLogger("gpufleet.test").info("hi")
        logging.getLogger("gpufleet.test").debug("not at info")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"] == "hi"


def test_every_circuit_change_is_heard_once() -> None:
    heard: list[str] = []
    b = breaker.Breaker(CircuitBreaker(consecutive_failures=2, open_seconds=10),
                        on_change=heard.append)  # fmt: skip
    b.on_failure(0.0)
    assert heard == []
    b.on_failure(1.0)
    b.on_failure(2.0)  # a late failure while open: no new change
    assert heard == ["open"]
    probe = b.on_attempt(13.0)
    b.release(probe)  # the probe got no verdict; the next one is the same half-open
    b.on_attempt(13.5)
    assert heard == ["open", "half-open"]
    b.on_failure(14.0)  # the probe failed: open again
    b.on_attempt(25.0)
    b.on_success()
    b.on_success()
    assert heard == ["open", "half-open", "open", "half-open", "closed"]
