"""The children of a RoutingPolicy as server-side-apply intents, and its router.yaml.

Pure. For policy ``P`` every child is named ``P-router`` (``labels.router_name``),
labelled ``labels.policy_labels(P)`` plus component ``router``, owned by the policy and
hashed like a ModelPool's children (``controller.owned.with_hash``): a ConfigMap whose
``router.yaml`` is the resolved, validated policy (the router watches it and applies
changes live, so an invalid policy never reaches a router), a ServiceAccount, and a
least-privilege Role and RoleBinding; in mode ``deployment`` also the router Deployment,
its Service and a PodDisruptionBudget. The router's pod template holds no trace of the
policy itself, so editing the policy restarts no router. ``problems`` names what no
reconcile can realise; render ``children`` only when it returns nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

import yaml

from gpufleet import labels as contract
from gpufleet import prometheustarget as target
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.controller import bodies, images, owned
from gpufleet.controller.routingpolicy import routerpod

PolicyRef = routerpod.PolicyRef
Discovery = Literal["endpointslices", "pods"]

_READ = ["get", "list", "watch"]
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 63  # a Service name (DNS-1035 label) and a label value


def _selector_problems(spec: RoutingPolicySpec) -> list[str]:
    terms = spec.pool_selector.match_expressions if spec.pool_selector else ()
    out = []
    for i, req in enumerate(terms):
        field = f"spec.poolSelector.matchExpressions[{i}].values"
        if req.operator in ("In", "NotIn") and not req.values:
            out.append(f"{field}: must not be empty for operator {req.operator}")
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            out.append(f"{field}: must be empty for operator {req.operator}")
    return out


def problems(ref: PolicyRef, spec: RoutingPolicySpec) -> tuple[str, ...]:
    """Why no router can be rendered for this policy, each naming the field at fault;
    empty when it can."""
    name = contract.router_name(ref.name)
    out = []
    if len(name) > _MAX_NAME:
        out.append(
            f"metadata.name: the router's name {name!r} has {len(name)} characters; label "
            f"values and Service names allow {_MAX_NAME} (policy names up to "
            f"{_MAX_NAME - len(contract.router_name(''))})"
        )
    elif spec.router.mode == "deployment" and not _DNS_1035.match(name):
        out.append(
            f"metadata.name: the router Service {name!r} must be a DNS-1035 label (lowercase "
            "letters, digits and '-', starting with a letter); or set spec.router.mode sidecar"
        )
    return (*out, *_selector_problems(spec))


def image_problems(spec: RoutingPolicySpec, allowed_prefixes: Iterable[str]) -> tuple[str, ...]:
    """Why ``spec.router.image`` may not run: the router holds its tenants' keys, so a
    policy author may name only an image under the operator's allowed prefixes (unset =
    the operator's own router image, which its administrator chose)."""
    image = spec.router.image
    prefixes = tuple(allowed_prefixes)
    if image is None or images.allowed(image, prefixes):
        return ()
    return (
        f"spec.router.image {image!r} is not under the operator's allowed image prefixes "
        f"({', '.join(prefixes) or 'none'}); unset it to run the operator's router image, "
        "or ask the operator's administrator to allow it (--allowed-image-prefix)",
    )


def prometheus_problems(spec: RoutingPolicySpec, *, allow_local: bool) -> tuple[str, ...]:
    """Why the routers may not read ``spec.prometheus.url``: a loopback or link-local
    host is the router pod itself or the node's metadata service, refused unless the
    operator allows local Prometheus hosts (``prometheustarget``)."""
    url = spec.prometheus.url if spec.prometheus else ""
    why = target.problem("spec.prometheus.url", url, allow_local=allow_local) if url else None
    return () if why is None else (why,)


def router_config(
    ref: PolicyRef,
    spec: RoutingPolicySpec,
    pools: tuple[str, ...],
    *,
    generation: int,
    discovery: Discovery,
    models: Mapping[str, str] | None = None,
) -> dict[str, bodies.Json]:
    """The router's configuration document (``gpufleet.router.config``): discovery of
    exactly ``pools``, the ConfigMap to watch, the whole spec, tenants' keys read from
    their Secrets through the API, and the Prometheus CA file when one is mounted.

    ``models`` (pool → ``spec.model.name``, the name its pods serve) becomes
    ``kubernetes.poolModels`` for the routed pools that exist: the router then holds a
    request for a pool with no ready pod (scale from zero) instead of answering 404."""
    known = models or {}
    pool_models: dict[str, bodies.Json] = {p: known[p] for p in pools if p in known}
    doc: dict[str, bodies.Json] = {
        "kubernetes": {
            "namespace": ref.namespace,
            "source": discovery,
            "pools": list(pools),
            "configMap": contract.router_name(ref.name),
            "policyName": ref.name,
            "poolModels": pool_models,
        },
        "policyGeneration": generation,
        "policy": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "apiKeys": {
            t.name: {"secret": {"name": t.api_key_secret_ref.name, "key": t.api_key_secret_ref.key}}
            for t in spec.admission.tenants
        },
    }
    if routerpod.ca_ref(spec) is not None:
        doc["prometheusCaFile"] = routerpod.CA_FILE
    return doc


def config_map(ref: PolicyRef, document: Mapping[str, bodies.Json]) -> bodies.ConfigMap:
    """The ConfigMap holding ``router.yaml`` (keys sorted: the same document, the same
    text and hash)."""
    text = yaml.safe_dump(dict(document), sort_keys=True, default_flow_style=False)
    return owned.with_hash(
        bodies.ConfigMap(
            apiVersion="v1",
            kind="ConfigMap",
            metadata=routerpod.metadata(ref),
            data={contract.ROUTER_CONFIG_KEY: text},
        )
    )


def service_account(ref: PolicyRef) -> bodies.ServiceAccount:
    """The router's identity; its token is mounted, since the router reads the API."""
    return owned.with_hash(
        bodies.ServiceAccount(
            apiVersion="v1",
            kind="ServiceAccount",
            metadata=routerpod.metadata(ref),
            automountServiceAccountToken=True,
        )
    )


def rules(ref: PolicyRef, spec: RoutingPolicySpec) -> list[bodies.PolicyRule]:
    """Read-only access to what the router watches: pods and EndpointSlices (RBAC cannot
    restrict by label, so namespace-wide), its own ConfigMap, and only the Secrets that
    hold tenants' keys (no Secret rule at all without tenants)."""
    out = [
        bodies.PolicyRule(apiGroups=[""], resources=["pods"], verbs=_READ),
        bodies.PolicyRule(
            apiGroups=["discovery.k8s.io"], resources=["endpointslices"], verbs=_READ
        ),
        bodies.PolicyRule(
            apiGroups=[""],
            resources=["configmaps"],
            verbs=_READ,
            resourceNames=[contract.router_name(ref.name)],
        ),
    ]
    secrets = sorted({t.api_key_secret_ref.name for t in spec.admission.tenants})
    if secrets:
        rule = bodies.PolicyRule(
            apiGroups=[""], resources=["secrets"], verbs=_READ, resourceNames=secrets
        )
        out.append(rule)
    return out


def role(ref: PolicyRef, spec: RoutingPolicySpec) -> bodies.Role:
    return owned.with_hash(
        bodies.Role(
            apiVersion="rbac.authorization.k8s.io/v1",
            kind="Role",
            metadata=routerpod.metadata(ref),
            rules=rules(ref, spec),
        )
    )


def role_binding(ref: PolicyRef) -> bodies.RoleBinding:
    name = contract.router_name(ref.name)
    return owned.with_hash(
        bodies.RoleBinding(
            apiVersion="rbac.authorization.k8s.io/v1",
            kind="RoleBinding",
            metadata=routerpod.metadata(ref),
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            subjects=[{"kind": "ServiceAccount", "name": name, "namespace": ref.namespace}],
        )
    )


def children(
    ref: PolicyRef,
    spec: RoutingPolicySpec,
    pools: tuple[str, ...],
    *,
    generation: int,
    image: str,
    discovery: Discovery,
    models: Mapping[str, str] | None = None,
) -> list[bodies.Child]:
    """Every child in apply order (configuration and account before the pods that use
    them); ``image`` is the operator's router image, used unless ``spec.router.image``
    is set. Sidecar mode renders no Deployment, Service or PodDisruptionBudget."""
    document = router_config(
        ref, spec, pools, generation=generation, discovery=discovery, models=models
    )
    out: list[bodies.Child] = [
        config_map(ref, document),
        service_account(ref),
        role(ref, spec),
        role_binding(ref),
    ]
    if spec.router.mode == "deployment":
        out += [
            routerpod.deployment(ref, spec, image=spec.router.image or image),
            routerpod.service(ref, spec),
            routerpod.disruption_budget(ref),
        ]
    return out
