"""The values routing decides over: endpoints, their load snapshot, and one request.

Frozen slotted dataclasses, built by ``gpufleet.router`` from its registry and the
request body. An endpoint's ``id`` is its URL, unique in the fleet.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

CircuitState = Literal["closed", "open", "half-open"]


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """One served model on one replica; ``kv_capacity_tokens`` 0 means unknown.

    ``throughput`` is the replica's relative throughput: generation weight x TP, or the
    learned figure in ``auto`` mode (A100-80GB x 1 = 1.0). ``pool`` is the ModelPool it
    belongs to (``static`` for configured backends); ``cost_per_gpu_hour`` its price
    when the pool's variant sets one; ``gpu_health_url`` its pod's GPU health agent's
    ``/health`` (empty when the pod has none); ``capacity_type`` ``spot`` or
    ``on-demand``; ``interruption`` why its node is about to go away (empty: it is not).
    """

    id: str
    model: str
    gpu: str
    tensor_parallel_size: int
    throughput: float
    kv_capacity_tokens: int = 0
    max_in_flight: int = 256
    pool: str = ""
    cost_per_gpu_hour: float | None = None
    gpu_health_url: str = ""
    capacity_type: str = "on-demand"
    interruption: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Signals:
    """Fresh metrics of one endpoint from Prometheus; a field is None when not scraped.

    ``kv_usage`` is vLLM's KV-cache usage in [0, 1], ``gpu_memory_percent`` DCGM's
    framebuffer used / total in percent, ``ttft_seconds`` the mean time to first token
    over the last minute (shown in ``/stats``; no scorer reads it yet).
    """

    kv_usage: float | None = None
    waiting: float | None = None
    running: float | None = None
    gpu_memory_percent: float | None = None
    gpu_utilization: float | None = None
    ttft_seconds: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Resident:
    """A request in flight on an endpoint whose class bounds its time per output token:
    the bound, its expected output tokens, and the endpoint's ``Load.prompt_tokens_sent``
    when it was placed there (the prompts sent after it are prefilled in the steps its
    tokens wait for)."""

    tpot_bound_s: float
    output_tokens: int
    sent_before: float


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """The router's view of one endpoint at decision time.

    ``pending_tokens`` is the cost (in tokens, see ``cost.request_cost``) of the requests
    in flight that has not been served yet; ``prefill_tokens`` the prompt tokens of
    those without a first token yet (prefill queued ahead of a new request);
    ``kv_tokens`` the prompt and expected output tokens of the requests in flight (the
    KV cache they will hold at their longest); ``prefill_per_s`` the prompt tokens per
    second sent there lately (``gpufleet.routing.queueing.Rate``); ``residents`` the
    requests in flight with a TPOT bound (``Resident``) and ``prompt_tokens_sent`` the
    prompt tokens ever sent there; ``signals`` is None
    when Prometheus data is missing or stale, and scorers then fall back to the local
    figures.
    """

    in_flight: int = 0
    pending_tokens: float = 0.0
    prefill_tokens: float = 0.0
    kv_tokens: float = 0.0
    prefill_per_s: float = 0.0
    healthy: bool = True
    circuit: CircuitState = "closed"
    probe_available: bool = True
    signals: Signals | None = None
    residents: tuple[Resident, ...] = ()
    prompt_tokens_sent: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    endpoint: Endpoint
    load: Load

    @property
    def id(self) -> str:
        return self.endpoint.id


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingRequest:
    """What routing knows about a request: never its text, only figures and keys."""

    model: str
    input_tokens: int
    output_tokens: int
    kv_mb: float = 0.0
    prefix_key: int | None = None
    session: str | None = None
    tenant: str = "anonymous"
    klass: str = "interactive"
