"""Prometheus signals, read in the background and never on the request path.

Every ``refreshIntervalSeconds`` the loop runs one instant query per metric (vLLM
waiting/running/KV usage, DCGM framebuffer used/free and utilization — names from the
policy's ``metricNames`` — and the mean time to first token over the last minute, from
the TTFT histogram's ``_sum`` and ``_count``) through the shared reader
(``gpufleet.promquery``, prometheus-api-client in a worker thread), and maps each series
to an endpoint by its labels:
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
import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from gpufleet.api.runtime import MetricNames
from gpufleet.promquery import client, series
from gpufleet.router import appkeys, learning, loops
from gpufleet.router.config import RouterConfig
from gpufleet.router.service import Router
from gpufleet.routing.model import Signals

log = logging.getLogger("gpufleet.router.signals")
IDLE_S = 5.0
# What /stats says of a Prometheus that did not answer, whatever the failure.
UNREACHABLE = "unreachable"


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


def combine(
    results: series.Results, names: MetricNames, keys: Mapping[str, str]
) -> dict[str, Signals]:
    """Per-endpoint signals from query results keyed by query."""
    per = {query: series.mean_by_owner(results.get(query, []), keys) for query in results}

    def get(metric: str, endpoint: str) -> float | None:
        return per.get(metric, {}).get(endpoint)

    out: dict[str, Signals] = {}
    for endpoint in {e for values in per.values() for e in values}:
        used = get(names.gpu_memory_used, endpoint)
        free = get(names.gpu_memory_free, endpoint)
        memory = 100.0 * used / (used + free) if used is not None and free else None
        out[endpoint] = Signals(
            ttft_seconds=get(series.ttft_query(names), endpoint),
            kv_usage=get(names.kv_cache_usage, endpoint),
            waiting=get(names.requests_waiting, endpoint),
            running=get(names.requests_running, endpoint),
            gpu_memory_percent=memory,
            gpu_utilization=get(names.gpu_utilization, endpoint),
        )
    return out


def _queries(names: MetricNames) -> list[str]:
    return [
        names.requests_waiting, names.requests_running, names.kv_cache_usage,
        names.gpu_memory_used, names.gpu_memory_free, names.gpu_utilization,
        series.ttft_query(names), *learning.counter_queries(names),
    ]  # fmt: skip


def verify(config: RouterConfig) -> bool | str:
    """``requests``' ``verify`` for the configured Prometheus."""
    source = config.policy.prometheus
    return client.verify_option(
        insecure_skip_verify=source is not None and source.tls.insecure_skip_verify,
        ca_file=config.prometheus_ca_file,
    )


async def prometheus_loop(app: web.Application) -> None:
    router = app[appkeys.ROUTER]
    reader: client.PrometheusReader | None = None
    while True:
        source = router.policy.prometheus
        if source is None:
            router.signals_error = ""
            await loops.pause(router, IDLE_S)
            continue
        url, timeout_s = source.url, source.refresh_interval_seconds * 2
        key = (url, verify(router.config), timeout_s)
        if reader is None or reader.key != key:
            if reader is not None:
                reader.close()
            reader = await asyncio.to_thread(
                client.PrometheusReader, url, verify=key[1], timeout_s=timeout_s
            )
        await _refresh(router, reader, source.metric_names)
        await loops.pause(router, source.refresh_interval_seconds)


async def _refresh(router: Router, reader: client.PrometheusReader, names: MetricNames) -> None:
    try:
        results = await reader.query(_queries(names))
    except Exception as exc:  # any failure of Prometheus degrades to local accounting
        # /stats says only "unreachable": the error's type told a refused connection
        # from a timeout or a bad answer, which made the router a port scanner for
        # anyone who may write spec.prometheus.url. The log, the operator's, keeps it.
        router.signals_error = UNREACHABLE
        log.debug("prometheus query failed: %s", type(exc).__name__)
    else:
        keys = endpoint_keys(router.config, router.registry.slots)
        now = router.clock()
        router.registry.set_signals(combine(results, names, keys), now)
        learning.counters_read(router, learning.counter_reads(results, names, keys), now=now)
        router.signals_at, router.signals_error = now, ""
