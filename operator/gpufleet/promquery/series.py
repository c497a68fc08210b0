"""Prometheus queries and the mapping of their result series to owners. Pure.

A result series belongs to an owner (a router endpoint, a model-server pod) when one of
its ``instance``, ``pod_ip`` or ``pod`` labels is a key of the caller's key map: the
``instance`` label is the scraped ``host:port`` (vLLM serves its metrics on the API
port), ``pod``/``pod_ip`` come from Kubernetes service discovery. A replica with
several GPUs (tensor parallelism) has several DCGM series; ``mean_by_owner`` averages
them, ``sum_by_owner`` adds them (counters such as generated tokens per second). The
queries take the metric names they read through ``VllmNames``, which the RoutingPolicy's
``api.runtime.MetricNames`` satisfies; this module needs no more of the API than that.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

Sample = tuple[Mapping[str, str], float]
Results = Mapping[str, Sequence[Sample]]
OWNER_LABELS = ("instance", "pod_ip", "pod")
RATE_WINDOW = "1m"


class VllmNames(Protocol):
    """The vLLM metric names the queries read (vLLM renamed some between versions)."""

    @property
    def time_to_first_token(self) -> str: ...

    @property
    def generation_tokens(self) -> str: ...


def ttft_query(names: VllmNames) -> str:
    """Mean time to first token over the last minute, per series (NaN when idle)."""
    ttft = names.time_to_first_token
    return f"rate({ttft}_sum[{RATE_WINDOW}]) / rate({ttft}_count[{RATE_WINDOW}])"


def ttft_quantile_query(names: VllmNames, quantile: float) -> str:
    """The ``quantile`` of time to first token over the last minute, per series (from
    the histogram's buckets; NaN when idle)."""
    bucket = f"{names.time_to_first_token}_bucket"
    return f"histogram_quantile({quantile}, rate({bucket}[{RATE_WINDOW}]))"


def generation_rate_query(names: VllmNames) -> str:
    """Generated tokens per second over the last minute, per series."""
    return f"rate({names.generation_tokens}[{RATE_WINDOW}])"


def owner(labels: Mapping[str, str], keys: Mapping[str, str]) -> str | None:
    """The owner of a series: the first of its owner labels found in ``keys``."""
    for label in OWNER_LABELS:
        value = labels.get(label)
        if value and value in keys:
            return keys[value]
    return None


def _by_owner(
    samples: Iterable[Sample], keys: Mapping[str, str], reduce: Callable[[list[float]], float]
) -> dict[str, float]:
    values: dict[str, list[float]] = collections.defaultdict(list)
    for labels, value in samples:
        found = owner(labels, keys)
        if found is not None:
            values[found].append(value)
    return {k: reduce(v) for k, v in values.items()}


def mean_by_owner(samples: Iterable[Sample], keys: Mapping[str, str]) -> dict[str, float]:
    """The mean value of each owner's series (owners without a series are absent)."""
    return _by_owner(samples, keys, lambda v: sum(v) / len(v))


def sum_by_owner(samples: Iterable[Sample], keys: Mapping[str, str]) -> dict[str, float]:
    """The sum of each owner's series (owners without a series are absent)."""
    return _by_owner(samples, keys, sum)
