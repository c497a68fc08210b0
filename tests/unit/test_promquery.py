"""The shared Prometheus reader: series mapped to owners by label (table-driven), the
TLS ``verify`` option, and instant queries against an in-process HTTP peer that answers
as Prometheus's ``/api/v1/query`` does — or redirects, which the reader does not follow."""

from __future__ import annotations

import contextlib
import http.server
import json
import pathlib
import threading
from collections.abc import Iterator

import pytest

from gpufleet.api.runtime import MetricNames
from gpufleet.promquery import client, series

KEYS = {"10.0.0.1:8000": "a", "10.0.0.2": "b", "pod-c": "c"}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"instance": "10.0.0.1:8000"}, "a"),
        ({"instance": "10.9.9.9:9400", "pod_ip": "10.0.0.2"}, "b"),
        ({"pod": "pod-c"}, "c"),
        ({"instance": "", "pod": "pod-c"}, "c"),
        ({"instance": "10.0.0.1:9400"}, None),
        ({}, None),
    ],
)
def test_owner_by_label(labels: dict[str, str], expected: str | None) -> None:
    assert series.owner(labels, KEYS) == expected


def test_mean_and_sum_by_owner() -> None:
    samples = [
        ({"pod": "pod-c"}, 10.0),
        ({"pod": "pod-c"}, 30.0),
        ({"instance": "10.0.0.1:8000"}, 5.0),
        ({"pod": "someone-else"}, 99.0),
    ]
    assert series.mean_by_owner(samples, KEYS) == {"c": 20.0, "a": 5.0}
    assert series.sum_by_owner(samples, KEYS) == {"c": 40.0, "a": 5.0}


def test_queries_follow_the_metric_names() -> None:
    names = MetricNames(generation_tokens="gen_total", time_to_first_token="ttft")
    assert series.generation_rate_query(names) == "rate(gen_total[1m])"
    assert series.ttft_query(names) == "rate(ttft_sum[1m]) / rate(ttft_count[1m])"


@pytest.mark.parametrize(
    ("skip", "ca", "expected"),
    [
        (False, None, True),
        (False, pathlib.Path("/etc/ca.crt"), "/etc/ca.crt"),
        (True, pathlib.Path("/etc/ca.crt"), False),
        (True, None, False),
    ],
)
def test_verify_option(skip: bool, ca: pathlib.Path | None, expected: bool | str) -> None:
    assert client.verify_option(insecure_skip_verify=skip, ca_file=ca) == expected


class _Prometheus(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if "query=broken" in self.path:
            self.send_error(400, "bad_data")
            return
        result = [
            {"metric": {"pod": "pod-c"}, "value": [0, "0.5"]},
            {"metric": {"pod": "pod-d"}, "value": [0, "NaN"]},
        ]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """The URL of an in-process HTTP server answering with ``handler``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def prometheus_url() -> Iterator[str]:
    with serving(_Prometheus) as url:
        yield url


class _Redirect(http.server.BaseHTTPRequestHandler):
    """Sends every query elsewhere, and records any request that followed."""

    followed: list[str] = []

    def do_GET(self) -> None:
        if self.path.startswith("/elsewhere"):
            self.followed.append(self.path)
            self.send_error(500)
            return
        self.send_response(302)
        self.send_header("Location", "/elsewhere" + self.path)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_reader_follows_no_redirect() -> None:
    _Redirect.followed.clear()
    with serving(_Redirect) as url:
        reader = client.PrometheusReader(url, verify=True, timeout_s=2)
        try:
            with pytest.raises(Exception, match="redirect"):
                reader.query_all(["up"])
        finally:
            reader.close()
    assert _Redirect.followed == []


async def test_reader_drops_non_finite_values(prometheus_url: str) -> None:
    reader = client.PrometheusReader(prometheus_url, verify=True, timeout_s=2)
    try:
        results = await reader.query(["up"])
    finally:
        reader.close()
    assert results == {"up": [({"pod": "pod-c"}, 0.5)]}


def test_reader_raises_on_a_failed_query(prometheus_url: str) -> None:
    reader = client.PrometheusReader(prometheus_url, verify=True, timeout_s=2)
    try:
        with pytest.raises(Exception, match="400"):
            reader.query_all(["up", "broken"])
    finally:
        reader.close()
