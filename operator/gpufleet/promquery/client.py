"""Instant queries against Prometheus through prometheus-api-client (I/O).

The client is synchronous (``requests``); ``PrometheusReader.query`` runs a batch of
queries in a worker thread so an event loop never blocks on Prometheus. Non-finite
values (a rate over an idle window is NaN) are dropped, so an absent series and an idle
one read the same. There are no client-side retries: callers poll, and the next poll is
the retry — a slow failure would only delay noticing that the data went stale.

TLS: an https Prometheus's certificate is verified against ``ca_file`` when given, else
the system CAs, unless ``insecure_skip_verify`` (``verify_option``). Redirects are not
followed (a redirect fails the query): Prometheus's query API answers where it is asked,
and a redirect would carry the request to a host no one vetted (``prometheustarget``).
"""

from __future__ import annotations

import asyncio
import math
import pathlib
from collections.abc import Sequence
from typing import Any

from gpufleet.promquery.series import Sample


def verify_option(*, insecure_skip_verify: bool, ca_file: pathlib.Path | None) -> bool | str:
    """``requests``' ``verify``: False when told to skip, the CA file, or True."""
    if insecure_skip_verify:
        return False
    return str(ca_file) if ca_file else True


class PrometheusReader:
    """Instant queries against one Prometheus URL; ``close`` releases its connections."""

    def __init__(self, url: str, *, verify: bool | str, timeout_s: float) -> None:
        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.key = (url, verify, timeout_s)
        self._session = requests.Session()
        self._session.verify = verify
        self._session.max_redirects = 0  # requests raises TooManyRedirects on the first
        self._client: Any = PrometheusConnect(
            url=url, session=self._session, retry=Retry(total=0), timeout=max(1, int(timeout_s))
        )

    def query_all(self, queries: Sequence[str]) -> dict[str, list[Sample]]:
        """Each query's finite samples, keyed by the query; raises on any failure."""
        results: dict[str, list[Sample]] = {}
        for query in queries:
            rows = self._client.custom_query(query=query)
            values = [(row.get("metric", {}), float(row["value"][1])) for row in rows]
            results[query] = [(labels, v) for labels, v in values if math.isfinite(v)]
        return results

    async def query(self, queries: Sequence[str]) -> dict[str, list[Sample]]:
        """``query_all`` in a worker thread."""
        return await asyncio.to_thread(self.query_all, queries)

    def close(self) -> None:
        self._session.close()
