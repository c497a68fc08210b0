"""The NetworkPolicy of a ModelPool: who may reach its vLLM and metrics ports (pure).

vLLM listens on every interface without an API key, so without a policy any pod in the
cluster could skip the router's authentication, quotas and queue. One NetworkPolicy per
pool, named after it, selects the pool's pods and admits, on the vLLM port (vLLM's
``/metrics`` shares it) and the GPU agent's port: the router pods of the RoutingPolicies
that route the pool (by the labels the operator gives them — a NetworkPolicy can select
by nothing else), and the metrics scraper (Prometheus: its namespace and pod labels, the
operator's settings). Nothing else is admitted, but what Kubernetes always admits: a
node's own traffic to its pods, so the kubelet's probes (Kubernetes docs, "Network
Policies"). Rendered only where the operator is told the network plugin enforces them
(``OperatorConfig.network_policies``); elsewhere they would promise what nothing does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from gpufleet import labels as contract
from gpufleet.api.modelpool import GPU_AGENT_PORT, ModelPoolSpec
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.controller import bodies, owned
from gpufleet.controller.modelpool import render
from gpufleet.controller.selection import resolve_pools

# Every namespace carries this label with its own name (Kubernetes 1.21 and later).
NAMESPACE_NAME = "kubernetes.io/metadata.name"


@dataclasses.dataclass(frozen=True, slots=True)
class Scraper:
    """Where the metrics scraper runs: its namespace and the labels of its pods."""

    namespace: str
    pod_labels: Mapping[str, str]


def _routers(policies: Iterable[str]) -> bodies.NetworkPolicyPeer:
    selector = bodies.PeerSelector(
        matchLabels={**contract.MANAGED, contract.COMPONENT: contract.ROUTER},
        matchExpressions=[
            bodies.SelectorRequirement(
                key=contract.ROUTING_POLICY, operator="In", values=sorted(set(policies))
            )
        ],
    )
    return bodies.NetworkPolicyPeer(podSelector=selector)


def _scraper(scraper: Scraper) -> bodies.NetworkPolicyPeer:
    return bodies.NetworkPolicyPeer(
        namespaceSelector=bodies.PeerSelector(matchLabels={NAMESPACE_NAME: scraper.namespace}),
        podSelector=bodies.PeerSelector(matchLabels=dict(scraper.pod_labels)),
    )


def _ports(spec: ModelPoolSpec) -> list[bodies.NetworkPolicyPort]:
    ports = [spec.serving.port] + ([GPU_AGENT_PORT] if spec.serving.gpu_health.enabled else [])
    return [bodies.NetworkPolicyPort(port=p, protocol="TCP") for p in ports]


@dataclasses.dataclass(frozen=True, slots=True)
class Ingress:
    """Who a pool's pods admit: the routers of these RoutingPolicies, and the scraper."""

    routers: tuple[str, ...]
    scraper: Scraper


def routing(
    pool: str,
    policies: Mapping[str, RoutingPolicySpec],
    pools: Mapping[str, Mapping[str, str]],
) -> tuple[str, ...]:
    """The names of the ``policies`` (name → spec) that route ``pool``, given the labels
    of the namespace's ``pools`` (name → labels) their selectors match against."""
    return tuple(
        sorted(name for name, spec in policies.items() if pool in resolve_pools(spec, pools))
    )


def pool_policy(
    pool: render.PoolRef, spec: ModelPoolSpec, *, routers: tuple[str, ...], scraper: Scraper
) -> bodies.NetworkPolicy:
    """The pool's NetworkPolicy: its ports admit the routers of the policies named in
    ``routers`` (none: no router rule, never an open one) and ``scraper``."""
    peers = [[_routers(routers)]] if routers else []
    rules = [
        bodies.NetworkPolicyRule({"ports": _ports(spec), "from": peer})
        for peer in [*peers, [_scraper(scraper)]]
    ]
    own = contract.pool_labels(pool.name) | {contract.COMPONENT: contract.MODEL_SERVER}
    return owned.with_hash(
        bodies.NetworkPolicy(
            apiVersion="networking.k8s.io/v1",
            kind="NetworkPolicy",
            metadata=owned.child_metadata(pool, pool.name, own),
            spec=bodies.NetworkPolicySpec(
                podSelector={"matchLabels": contract.pool_labels(pool.name)},
                policyTypes=["Ingress"],
                ingress=rules,
            ),
        )
    )
