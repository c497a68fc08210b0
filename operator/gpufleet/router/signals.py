"""Prometheus signals, read in the background and never on the request path.

Every ``refreshIntervalSeconds`` the loop runs one instant query per metric (vLLM
waiting/running/KV usage, DCGM framebuffer used/free and utilization — names from the
policy's ``metricNames``) through prometheus-api-client in a worker thread (the client
is synchronous), and maps each series to an endpoint by its labels: ``instance`` equal
to the endpoint's ``host:port`` (vLLM metrics on the API port), to its ``metricsUrl``'s
(the DCGM exporter of a static backend), or ``pod``/``pod_ip`` matching the endpoint
address (Kubernetes service discovery). Values of a replica's TP GPUs are averaged.

An endpoint's signals are fresh for ``stalenessSeconds`` after a read that returned
them; after that, or when Prometheus is unreachable, routing falls back to the
router's own accounting, which ``/stats`` and ``gpufleet_router_signals_stale`` show.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gpufleet.api.runtime import MetricNames
from gpufleet.router import appkeys
from gpufleet.router.config import RouterConfig
from gpufleet.routing.model import Signals

log = logging.getLogger("gpufleet.router.signals")
Sample = tuple[Mapping[str, str], float]


def _hostport(url: str) -> str:
    return urlsplit(url).netloc


def endpoint_keys(config: RouterConfig, endpoint_ids: Iterable[str]) -> dict[str, str]:
    """Label value (``instance`` host:port, or pod address) -> endpoint id."""
    keys: dict[str, str] = {}
    metrics_urls = {b.url: b.metrics_url for b in config.backends if b.metrics_url}
    for endpoint_id in endpoint_ids:
        keys[_hostport(endpoint_id)] = endpoint_id
        keys[urlsplit(endpoint_id).hostname or ""] = endpoint_id
        if endpoint_id in metrics_urls:
            keys[_hostport(metrics_urls[endpoint_id])] = endpoint_id
    return keys


def _owner(labels: Mapping[str, str], keys: Mapping[str, str]) -> str | None:
    for label in ("instance", "pod_ip", "pod"):
        value = labels.get(label)
        if value and value in keys:
            return keys[value]
    return None


def _mean_by_endpoint(samples: Iterable[Sample], keys: Mapping[str, str]) -> dict[str, float]:
    sums: dict[str, list[float]] = collections.defaultdict(list)
    for labels, value in samples:
        owner = _owner(labels, keys)
        if owner is not None:
            sums[owner].append(value)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def combine(
    results: Mapping[str, list[Sample]], names: MetricNames, keys: Mapping[str, str]
) -> dict[str, Signals]:
    """Per-endpoint signals from query results keyed by metric name."""
    per = {name: _mean_by_endpoint(results.get(name, []), keys) for name in results}

    def get(metric: str, endpoint: str) -> float | None:
        return per.get(metric, {}).get(endpoint)

    out: dict[str, Signals] = {}
    for endpoint in {e for values in per.values() for e in values}:
        used = get(names.gpu_memory_used, endpoint)
        free = get(names.gpu_memory_free, endpoint)
        memory = 100.0 * used / (used + free) if used is not None and free else None
        out[endpoint] = Signals(
            kv_usage=get(names.kv_cache_usage, endpoint),
            waiting=get(names.requests_waiting, endpoint),
            running=get(names.requests_running, endpoint),
            gpu_memory_percent=memory,
            gpu_utilization=get(names.gpu_utilization, endpoint),
        )
    return out


def _names(names: MetricNames) -> list[str]:
    return [
        names.requests_waiting, names.requests_running, names.kv_cache_usage,
        names.gpu_memory_used, names.gpu_memory_free, names.gpu_utilization,
    ]  # fmt: skip


def _query_all(client: Any, metric_names: list[str]) -> dict[str, list[Sample]]:
    results: dict[str, list[Sample]] = {}
    for name in metric_names:
        rows = client.custom_query(query=name)
        results[name] = [(row.get("metric", {}), float(row["value"][1])) for row in rows]
    return results


def _client(url: str, timeout_s: float) -> Any:
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    # No client-side retries: the next refresh is the retry, and a slow failure would
    # only delay noticing that the signals went stale.
    return PrometheusConnect(
        url=url, disable_ssl=True, retry=Retry(total=0), timeout=max(1, int(timeout_s))
    )


async def prometheus_loop(app: web.Application) -> None:
    router = app[appkeys.ROUTER]
    source = router.policy.prometheus
    assert source is not None
    client = await asyncio.to_thread(_client, source.url, source.refresh_interval_seconds * 2)
    names = _names(source.metric_names)
    while True:
        try:
            results = await asyncio.to_thread(_query_all, client, names)
        except Exception as exc:  # any failure of Prometheus degrades to local accounting
            router.signals_error = f"{type(exc).__name__}"
            log.debug("prometheus query failed: %s", type(exc).__name__)
        else:
            keys = endpoint_keys(router.config, router.registry.slots)
            now = router.clock()
            router.registry.set_signals(combine(results, source.metric_names, keys), now)
            router.signals_at, router.signals_error = now, ""
        await asyncio.sleep(source.refresh_interval_seconds)
