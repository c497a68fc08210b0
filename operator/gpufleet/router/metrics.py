"""The router's Prometheus metrics, in a registry of its own (one per app).

Counters and histograms are updated on the request path; per-endpoint gauges (in
flight, pending tokens, breaker state, GPUs and price), signal staleness and the
requests waiting per pool (held and queued: the autoscaler's demand) are read at scrape
time by collectors, so they cost nothing per request.

Prometheus conventions (https://prometheus.io/docs/practices/naming/ and
/instrumentation/): counters end in ``_total``, durations are histograms in seconds,
the request class is the label ``class`` and the HTTP status answered is ``code``, apart
from ``outcome`` (a 200 stream can still end in an error event). No ``_created`` series
are exported (prometheus_client's switch is process-wide; the router is the process),
and the process collector (CPU, memory, file descriptors) is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpufleet.router.registry import Registry
from gpufleet.routing.waitqueue import Demand

_BREAKER = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
# Up to a day: the longest requestTimeoutSeconds (86400) the API admits, so a request the
# policy lets finish lands in a finite bucket; the queue (3600) and first-byte (3600)
# limits are below it.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                   600, 1200, 1800, 3600, 7200, 14400, 28800, 43200, 86400)  # fmt: skip


class _Live(Collector):
    def __init__(self, registry: Registry, signal_age: Callable[[], float | None]) -> None:
        self._registry = registry
        self._signal_age = signal_age

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["endpoint", "gpu"]
        in_flight = GaugeMetricFamily(
            "gpufleet_router_in_flight", "Requests in flight per endpoint.", labels=labels
        )
        pending = GaugeMetricFamily(
            "gpufleet_router_pending_tokens",
            "Expected tokens not yet served per endpoint (decode-token equivalents).",
            labels=labels,
        )
        state = GaugeMetricFamily(
            "gpufleet_router_breaker_state",
            "Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open.",
            labels=labels,
        )
        for candidate in self._registry.candidates():
            key = [candidate.id, candidate.endpoint.gpu]
            in_flight.add_metric(key, candidate.load.in_flight)
            pending.add_metric(key, candidate.load.pending_tokens)
            state.add_metric(key, _BREAKER[candidate.load.circuit])
        yield from (in_flight, pending, state)
        yield from self._price_families()
        yield from self._signal_families()

    def _price_families(self) -> Iterable[GaugeMetricFamily]:
        """GPUs and price per endpoint: with the token counters, the dollars per token
        of each generation (deploy/observability's recording rules)."""
        labels = ["endpoint", "gpu", "pool", "model"]
        gpus = GaugeMetricFamily(
            "gpufleet_router_endpoint_gpus",
            "GPUs one endpoint's replica holds (its tensor-parallel size).",
            labels=labels,
        )
        price = GaugeMetricFamily(
            "gpufleet_router_endpoint_cost_per_gpu_hour",
            "Price of one of the endpoint's GPUs per hour, in dollars, where its pool's "
            "variant sets costPerGpuHour.",
            labels=labels,
        )
        for candidate in self._registry.candidates():
            e = candidate.endpoint
            key = [e.id, e.gpu, e.pool, e.model]
            gpus.add_metric(key, e.tensor_parallel_size)
            if e.cost_per_gpu_hour is not None:
                price.add_metric(key, e.cost_per_gpu_hour)
        yield from (gpus, price)

    def _signal_families(self) -> Iterable[GaugeMetricFamily]:
        age = self._signal_age()
        stale = GaugeMetricFamily(
            "gpufleet_router_signals_stale",
            "1 when Prometheus signals are missing or stale and local accounting is used.",
        )
        fresh = self._registry.fresh_signals()
        stale.add_metric([], 0.0 if fresh else 1.0)
        yield stale
        age_family = GaugeMetricFamily(
            "gpufleet_router_signals_age_seconds",
            "Seconds since Prometheus signals were last read (-1: never).",
        )
        age_family.add_metric([], -1.0 if age is None else age)
        yield age_family


class _Demand(Collector):
    def __init__(self, demand: Callable[[], Mapping[str, Demand]]) -> None:
        self._demand = demand

    def collect(self) -> Iterable[GaugeMetricFamily]:
        held = GaugeMetricFamily(
            "gpufleet_router_held_requests",
            "Requests waiting for a pool with no ready endpoint (scale from zero).",
            labels=["pool"],
        )
        queued = GaugeMetricFamily(
            "gpufleet_router_queued_requests",
            "Requests waiting because every endpoint of their pool is saturated.",
            labels=["pool"],
        )
        for pool, demand in self._demand().items():
            held.add_metric([pool], demand.held)
            queued.add_metric([pool], demand.queued)
        yield from (held, queued)


class RouterMetrics:
    """The router's registry and the metrics the request path updates."""

    def __init__(
        self,
        registry: Registry,
        signal_age: Callable[[], float | None],
        *,
        demand: Callable[[], Mapping[str, Demand]],
    ) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gpufleet_router_requests",
            "Requests by model, generation, endpoint, class, outcome and HTTP status code.",
            ["model", "gpu", "endpoint", "class", "outcome", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "gpufleet_router_request_duration_seconds",
            "Whole requests, arrival to the last byte (a stream's end), by HTTP status code.",
            ["model", "gpu", "class", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "gpufleet_router_prompt_tokens",
            "Prompt tokens of successful requests, as the engine reported them (else estimated).",
            ["tenant", "model", "gpu"],
            registry=r,
        )
        self.completion_tokens = Counter(
            "gpufleet_router_completion_tokens",
            "Completion tokens of successful requests, as the engine reported them (else one "
            "per streamed event).",
            ["tenant", "model", "gpu"],
            registry=r,
        )
        self.triggers = Counter(
            "gpufleet_router_routing_triggers", "Large-request triggers fired.", ["trigger"],
            registry=r,
        )  # fmt: skip
        self.tier_requests = Counter(
            "gpufleet_router_tier_requests",
            "Requests per requested model by the spillover tier that served them (index "
            "from 0; overflow: every tier was saturated) and whether the fallback model did.",
            ["model", "tier", "fallback"],
            registry=r,
        )
        self.retries = Counter(
            "gpufleet_router_retries", "Attempts retried on another endpoint.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "gpufleet_router_queue_wait_seconds", "Time spent in the admission queue.",
            ["class"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "gpufleet_router_time_to_first_byte_seconds",
            "Router-measured time to the first response byte from the upstream, per attempt.",
            ["model", "gpu", "class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        by_class = ["class", "gpu"]
        self.class_tokens = Counter(
            "gpufleet_router_class_tokens",
            "Tokens of successful requests by class and generation; type prompt or completion.",
            [*by_class, "type"],
            registry=r,
        )
        self.gpu_seconds = Counter(
            "gpufleet_router_gpu_seconds",
            "GPU-seconds of successful requests: duration x TP / the batch they ran in.",
            by_class,
            registry=r,
        )
        self.dollars = Counter(
            "gpufleet_router_dollars",
            "Dollars of successful requests on priced endpoints: GPU-seconds x price / 3600.",
            by_class,
            registry=r,
        )
        self.slo_requests = Counter(
            "gpufleet_router_slo_requests",
            "Successful requests of classes with an SLO, by whether they met it (met).",
            [*by_class, "met"],
            registry=r,
        )
        r.register(_Live(registry, signal_age))
        r.register(_Demand(demand))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
