"""Which ModelPools a RoutingPolicy routes: its ``pools`` list or its label selector.

Pure. Both kinds ask it: a policy's routers are configured with the pools it resolves,
and a pool's NetworkPolicy admits the routers of the policies that resolve it.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpufleet.api import common
from gpufleet.api.routingpolicy import RoutingPolicySpec


def _requirement(req: common.LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    value = labels.get(req.key)
    match req.operator:
        case "In":
            return value is not None and value in req.values
        case "NotIn":
            return value is None or value not in req.values
        case "Exists":
            return value is not None
        case "DoesNotExist":
            return value is None


def selector_matches(selector: common.LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: every ``matchLabels`` pair and every
    ``matchExpressions`` term must hold (``NotIn`` holds for an absent key); an empty
    selector matches everything."""
    pairs = all(labels.get(k) == v for k, v in selector.match_labels.items())
    return pairs and all(_requirement(r, labels) for r in selector.match_expressions)


def resolve_pools(
    spec: RoutingPolicySpec, pools: Mapping[str, Mapping[str, str]]
) -> tuple[str, ...]:
    """The pools routed: ``spec.pools`` in the order given (duplicates dropped; a named
    pool need not exist yet), else the names of the ModelPools in ``pools`` (name →
    labels, the policy's namespace) that ``poolSelector`` matches, sorted."""
    if spec.pool_selector is None:
        return tuple(dict.fromkeys(spec.pools))
    selector = spec.pool_selector
    return tuple(sorted(name for name, lbls in pools.items() if selector_matches(selector, lbls)))
