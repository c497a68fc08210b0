"""The autoscaler's inputs for one ModelPool, from what the operator observes. Pure.

``queries`` names the five Prometheus instant queries the autoscaler runs once per pass
for every pool (vLLM's KV-cache usage, waiting and running requests, generated tokens
per second and the p90 time to first token over a minute); ``signals`` maps their series
to a pool's ready pods by pod IP or name (``gpufleet.promquery.series``) and sums them
per variant (KV-cache usage is the mean, the p90 TTFT the worst pod's). ``demand`` adds
up what the routers' ``/stats`` say they queue and hold for a pool (``demand: {<pool>:
{queued, held}}``; a router that does not report it counts 0). ``pool`` turns the
ModelPool's variants as its reconciler planned them — the per-variant TP and
feasibility its status publishes (``modelpool.status.published_plan``): the planner
runs once, in the reconciler — their Deployments and pods into ``scaling.model.Pool``: a
variant the autoscaler may scale keeps its ``minReplicas``..``maxReplicas``; any other
feasible variant is pinned to the replicas the operator applies, so its capacity counts
but its size does not change; ``policy`` reads its targets and behaviour from
``spec.autoscaling`` (the API type stays here, at the edge: ``scaling`` sees its own).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

from gpufleet.api.modelpool import Autoscaling, ModelPoolSpec, VariantStatus
from gpufleet.api.runtime import MetricNames
from gpufleet.api.variant import Variant
from gpufleet.controller import observe
from gpufleet.controller.modelpool import plan
from gpufleet.hardware import catalog
from gpufleet.promquery import series
from gpufleet.scaling import inventory, model


@dataclasses.dataclass(frozen=True, slots=True)
class Queries:
    """The instant queries of one pass, by what they measure."""

    kv_usage: str
    waiting: str
    running: str
    tokens_per_second: str
    ttft_p90: str

    def all(self) -> tuple[str, ...]:
        return tuple(query for _, query in _fields(self))


def queries(names: MetricNames | None = None) -> Queries:
    """The queries for vLLM's metric names (``names``, default vLLM's current ones)."""
    names = names or MetricNames()
    return Queries(
        kv_usage=names.kv_cache_usage,
        waiting=names.requests_waiting,
        running=names.requests_running,
        tokens_per_second=series.generation_rate_query(names),
        ttft_p90=series.ttft_quantile_query(names, 0.9),
    )


def scaled(spec: ModelPoolSpec) -> list[str]:
    """Names of the variants gpufleet's autoscaler sizes (none with ``mode: external``)."""
    if spec.autoscaling.mode != "gpufleet":
        return []
    return [v.name for v in spec.variants if plan.autoscaled(spec, v)]


def _ready_keys(pods: Iterable[observe.ObservedPod]) -> dict[str, str]:
    """Series label value (pod IP, pod name) → pod name, over Ready pods."""
    keys: dict[str, str] = {}
    for pod in pods:
        if pod.ready:
            keys[pod.name] = pod.name
            if pod.ip:
                keys[pod.ip] = pod.name
    return keys


def _by_pod(samples: Sequence[series.Sample], keys: Mapping[str, str]) -> dict[str, float]:
    return series.mean_by_owner(_instance_hosts(samples), keys)


def _instance_hosts(samples: Sequence[series.Sample]) -> list[series.Sample]:
    """Samples with ``host:port`` instances also keyed by host, so a pod IP matches."""
    out: list[series.Sample] = []
    for labels, value in samples:
        instance = labels.get("instance", "")
        host = instance.rsplit(":", 1)[0] if ":" in instance else instance
        out.append(({**labels, "pod_ip": labels.get("pod_ip") or host}, value))
    return out


def signals(
    results: series.Results, pods: Sequence[observe.ObservedPod], q: Queries
) -> dict[str, model.Signals]:
    """Signals per variant over its Ready pods that have a KV-cache series; a variant
    none of whose Ready pods has one is absent (its signals are not fresh)."""
    keys = _ready_keys(pods)
    per = {name: _by_pod(results.get(query, ()), keys) for name, query in _fields(q)}
    variant_of = {p.name: p.variant for p in pods if p.ready}
    ttft = per["ttft_p90"]
    out: dict[str, model.Signals] = {}
    for variant in sorted(set(variant_of.values())):
        seen = [p for p, v in variant_of.items() if v == variant and p in per["kv_usage"]]
        if not seen:
            continue
        out[variant] = model.Signals(
            kv_usage=sum(per["kv_usage"][p] for p in seen) / len(seen),
            waiting=sum(per["waiting"].get(p, 0.0) for p in seen),
            running=sum(per["running"].get(p, 0.0) for p in seen),
            tokens_per_second=sum(per["tokens_per_second"].get(p, 0.0) for p in seen),
            ttft_p90_s=max((ttft[p] for p in seen if p in ttft), default=None),
        )
    return out


def _fields(q: Queries) -> list[tuple[str, str]]:
    return [(f.name, getattr(q, f.name)) for f in dataclasses.fields(q)]


def _count(value: object) -> int:
    # JSON's 1e999 decodes to inf, which int() refuses (OverflowError); a count that
    # is not a finite positive number is no count.
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return int(value)
    return 0


def demand(stats: Iterable[object], pool: str) -> model.Demand:
    """Requests queued and held for ``pool`` over the routers' decoded ``/stats``
    bodies; anything not shaped ``{"demand": {pool: {"queued": n, "held": n}}}`` is 0."""
    queued = held = 0
    for body in stats:
        entry = body.get("demand", {}) if isinstance(body, Mapping) else {}
        mine = entry.get(pool) if isinstance(entry, Mapping) else None
        if isinstance(mine, Mapping):
            queued += _count(mine.get("queued"))
            held += _count(mine.get("held"))
    return model.Demand(queued=queued, held=held)


def _variant(
    v: Variant,
    planned: VariantStatus,
    *,
    scaled: bool,
    live: observe.ObservedChild | None,
    pods: Sequence[observe.ObservedPod],
    signals: model.Signals | None,
) -> model.Variant:
    tp = planned.tensor_parallel_size or 1
    mine = [p for p in pods if p.variant == v.name and p.phase not in ("Succeeded", "Failed")]
    replicas = live.replicas if live is not None and live.replicas is not None else 0
    top = v.max_replicas if scaled and v.max_replicas is not None else v.min_replicas
    return model.Variant(
        name=v.name,
        gpu=planned.gpu,
        tensor_parallel_size=tp,
        min_replicas=v.min_replicas,
        max_replicas=top,
        replicas=replicas if scaled else v.min_replicas,
        ready=sum(1 for p in mine if p.ready),
        prior_speed=catalog.get(planned.gpu).throughput_weight * tp,
        loading_since=tuple(
            p.started for p in mine if not p.ready and not p.unschedulable and p.started
        ),
        signals=signals,
        cost_per_gpu_hour=v.cost_per_gpu_hour,
    )


def pool(
    spec: ModelPoolSpec,
    planned: Sequence[VariantStatus],
    *,
    deployments: Mapping[str, observe.ObservedChild],
    pods: Sequence[observe.ObservedPod],
    signals: Mapping[str, model.Signals],
    demand: model.Demand,
    nodes: inventory.Inventory | None,
) -> model.Pool:
    """The decision's input: every variant of ``spec`` the reconciler's plan (``planned``,
    its status) found feasible, keyed by variant name in ``deployments`` and
    ``signals``."""
    mine = set(scaled(spec))
    by_name = {v.name: v for v in spec.variants}
    variants = tuple(
        _variant(
            by_name[p.name],
            p,
            scaled=p.name in mine,
            live=deployments.get(p.name),
            pods=pods,
            signals=signals.get(p.name),
        )
        for p in planned
        if p.feasible and p.name in by_name
    )
    return model.Pool(
        variants=variants,
        policy=policy(spec.autoscaling),
        demand=demand,
        inventory=nodes,
    )


def policy(spec: Autoscaling) -> model.Policy:
    """The decision's targets and behaviour from the pool's ``spec.autoscaling``."""
    return model.Policy(
        target_kv_usage=spec.target_kv_cache_usage,
        target_waiting=spec.target_waiting_requests,
        target_ttft_s=spec.target_ttft_seconds,
        preference=spec.scale_up_preference,
        cold_start_s=spec.cold_start_seconds,
        up_window_s=spec.scale_up_stabilization_seconds,
        up_pods=spec.scale_up_pods,
        up_period_s=spec.scale_up_period_seconds,
        down_window_s=spec.scale_down_stabilization_seconds,
        down_pods=spec.scale_down_pods,
        down_period_s=spec.scale_down_period_seconds,
        scale_to_zero_after_s=spec.scale_to_zero_after_seconds,
    )


def blind(pool: model.Pool) -> list[str]:
    """Variants with Ready replicas but no fresh signals (the decision holds for them)."""
    return [v.name for v in pool.variants if v.ready > 0 and v.signals is None]
