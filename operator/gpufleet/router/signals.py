"""Prometheus signals, read in the background and never on the request path.

Every ``refreshIntervalSeconds`` the loop runs one instant query per metric (vLLM
waiting/running/KV usage, DCGM framebuffer used/free and utilization — names from the
policy's ``metricNames`` — and the mean time to first token over the last minute, from
the TTFT histogram's ``_sum`` and ``_count``) through prometheus-api-client in a worker
thread (the client is synchronous), and maps each series to an endpoint by its labels:
``instance`` equal to the endpoint's ``host:port`` (vLLM metrics on the API port), to
its ``metricsUrl``'s (the DCGM exporter of a static backend), or ``pod``/``pod_ip``
matching the endpoint address (Kubernetes service discovery). Values of a replica's TP
GPUs are averaged.

TLS: an https Prometheus's certificate is verified — against ``prometheusCaFile`` when
set, else the system CAs — unless ``tls.insecureSkipVerify``. Each pass reads the
router's current configuration: a live change of URL, TLS, names or interval takes
effect at the next pass, and without ``policy.prometheus`` the loop idles.

An endpoint's signals are fresh for ``stalenessSeconds`` after a read that returned
them; after that, or when Prometheus is unreachable, routing falls back to the
router's own accounting, which ``/stats`` and ``gpufleet_router_signals_stale`` show.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gpufleet.api.runtime import MetricNames
from gpufleet.router import appkeys, loops
from gpufleet.router.config import RouterConfig
from gpufleet.router.service import Router
from gpufleet.routing.model import Signals

log = logging.getLogger("gpufleet.router.signals")
Sample = tuple[Mapping[str, str], float]
IDLE_S = 5.0


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
            ttft_seconds=get(ttft_query(names), endpoint),
            kv_usage=get(names.kv_cache_usage, endpoint),
            waiting=get(names.requests_waiting, endpoint),
            running=get(names.requests_running, endpoint),
            gpu_memory_percent=memory,
            gpu_utilization=get(names.gpu_utilization, endpoint),
        )
    return out


def ttft_query(names: MetricNames) -> str:
    """Mean time to first token over the last minute, per series (NaN when idle)."""
    ttft = names.time_to_first_token
    return f"rate({ttft}_sum[1m]) / rate({ttft}_count[1m])"


def _queries(names: MetricNames) -> list[str]:
    return [
        names.requests_waiting, names.requests_running, names.kv_cache_usage,
        names.gpu_memory_used, names.gpu_memory_free, names.gpu_utilization, ttft_query(names),
    ]  # fmt: skip


def _query_all(client: Any, queries: list[str]) -> dict[str, list[Sample]]:
    results: dict[str, list[Sample]] = {}
    for query in queries:
        rows = client.custom_query(query=query)
        values = [(row.get("metric", {}), float(row["value"][1])) for row in rows]
        results[query] = [(labels, v) for labels, v in values if math.isfinite(v)]
    return results


def verify(config: RouterConfig) -> bool | str:
    """``requests``' ``verify``: False when told to skip, the CA file, or True."""
    source = config.policy.prometheus
    if source is not None and source.tls.insecure_skip_verify:
        return False
    return str(config.prometheus_ca_file) if config.prometheus_ca_file else True


def _client(url: str, verify: bool | str, timeout_s: float) -> Any:
    import requests
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.verify = verify
    # No client-side retries: the next refresh is the retry, and a slow failure would
    # only delay noticing that the signals went stale.
    return PrometheusConnect(
        url=url, session=session, retry=Retry(total=0), timeout=max(1, int(timeout_s))
    )


async def prometheus_loop(app: web.Application) -> None:
    router = app[appkeys.ROUTER]
    clients: dict[tuple[str, bool | str, float], Any] = {}
    while True:
        source = router.policy.prometheus
        if source is None:
            router.signals_error = ""
            await loops.pause(router, IDLE_S)
            continue
        key = (source.url, verify(router.config), source.refresh_interval_seconds * 2)
        if key not in clients:
            for old in clients.values():
                old.close()
            clients = {key: await asyncio.to_thread(_client, *key)}
        await _refresh(router, clients[key], source.metric_names)
        await loops.pause(router, source.refresh_interval_seconds)


async def _refresh(router: Router, client: Any, names: MetricNames) -> None:
    try:
        results = await asyncio.to_thread(_query_all, client, _queries(names))
    except Exception as exc:  # any failure of Prometheus degrades to local accounting
        router.signals_error = f"{type(exc).__name__}"
        log.debug("prometheus query failed: %s", type(exc).__name__)
    else:
        keys = endpoint_keys(router.config, router.registry.slots)
        now = router.clock()
        router.registry.set_signals(combine(results, names, keys), now)
        router.signals_at, router.signals_error = now, ""
