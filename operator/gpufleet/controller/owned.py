"""The children an object's reconcile writes, whatever its kind: identity, hash, plan.

Pure. Every child is owned by its ModelPool or RoutingPolicy (``ownerReferences``, so
deleting the owner lets the garbage collector remove it) and carries
``gpufleet.io/spec-hash``: a digest of the intent itself, so a changed intent is seen
without comparing bodies. ``diff`` compares the intents with what the watches have seen
and returns a ``Plan``: the intents to apply (missing, changed since last applied — the
spec-hash differs — or edited out of band — the live object no longer contains the
intent) and the children to delete (no longer wanted). An empty plan means nothing is
written. ``claim_problem`` refuses to take over an object someone else controls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from gpufleet import labels as contract
from gpufleet.api import common
from gpufleet.controller import bodies, observe

_C = TypeVar(
    "_C",
    bodies.Deployment,
    bodies.Service,
    bodies.PodDisruptionBudget,
    bodies.ConfigMap,
    bodies.ServiceAccount,
    bodies.Role,
    bodies.RoleBinding,
    bodies.RouterDeployment,
    bodies.NetworkPolicy,
)


@dataclasses.dataclass(frozen=True, slots=True)
class OwnerRef:
    """The identity of the ModelPool or RoutingPolicy the children belong to."""

    name: str
    namespace: str
    uid: str


def owner_reference(owner: OwnerRef, *, kind: str = "ModelPool") -> bodies.OwnerReference:
    return bodies.OwnerReference(
        apiVersion=common.API_VERSION,
        kind=kind,
        name=owner.name,
        uid=owner.uid,
        controller=True,
        blockOwnerDeletion=True,
    )


def child_metadata(
    owner: OwnerRef, name: str, labels: dict[str, str], *, kind: str = "ModelPool"
) -> bodies.Metadata:
    """Metadata of a child named ``name``, controlled by the ``kind`` object ``owner``."""
    return bodies.Metadata(
        name=name,
        namespace=owner.namespace,
        labels=labels,
        ownerReferences=[owner_reference(owner, kind=kind)],
    )


def spec_hash(child: bodies.Child) -> str:
    """A digest of the intent, ignoring any spec-hash annotation already on it."""
    doc = json.loads(json.dumps(child))
    annotations = doc["metadata"].pop("annotations", {})
    annotations.pop(contract.SPEC_HASH, None)
    if annotations:
        doc["metadata"]["annotations"] = annotations
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_hash(child: _C) -> _C:
    digest = spec_hash(child)
    child["metadata"]["annotations"] = child["metadata"].get("annotations", {}) | {
        contract.SPEC_HASH: digest
    }
    return child


@dataclasses.dataclass(frozen=True, slots=True)
class Deletion:
    kind: bodies.ChildKind
    namespace: str
    name: str
    uid: str


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Writes that bring the children to the intent; ``apply`` keeps dependency order."""

    apply: tuple[bodies.Child, ...] = ()
    delete: tuple[Deletion, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.apply and not self.delete


def _stale(intent: bodies.Child, live: observe.ObservedChild | None) -> bool:
    if live is None:
        return True
    hashes = intent["metadata"].get("annotations", {})
    if live.spec_hash != hashes.get(contract.SPEC_HASH):
        return True
    as_json: bodies.Json = intent  # type: ignore[assignment]
    return not observe.contains(live.body, as_json)


def diff(
    intents: Iterable[bodies.Child],
    observed: Mapping[tuple[str, str], observe.ObservedChild],
    *,
    hold_deployments: bool = False,
) -> Plan:
    """The writes that turn ``observed`` (keyed by (kind, name)) into ``intents``."""
    wanted = {(c["kind"], c["metadata"]["name"]): c for c in intents}
    held = {"Deployment"} if hold_deployments else set()
    apply = tuple(
        c for key, c in wanted.items() if key[0] not in held and _stale(c, observed.get(key))
    )
    delete = tuple(
        Deletion(kind=live.kind, namespace=live.namespace, name=live.name, uid=live.uid)  # type: ignore[arg-type]
        for key, live in sorted(observed.items())
        if key not in wanted and live.kind not in held
    )
    return Plan(apply=apply, delete=delete)


def claim_problem(intent: bodies.Child, live: Mapping[str, Any] | None) -> str:
    """Why ``intent`` must not be applied over ``live``, the object of the same kind and
    name that exists though no watch showed it as this owner's child; empty when it may.

    Server-side apply with ``force`` takes every field it names, so applying over an
    object another owner controls (a ModelPool ``x-router`` next to a RoutingPolicy
    ``x``, a user's own Service) would take it over, and both owners would rewrite it
    for ever. Only an object this owner controls is applied to.
    """
    if live is None:
        return ""
    mine = {ref["uid"] for ref in intent["metadata"].get("ownerReferences", [])}
    owners = (live.get("metadata") or {}).get("ownerReferences") or []
    controller = next((o for o in owners if isinstance(o, Mapping) and o.get("controller")), None)
    kind, name = intent["kind"], intent["metadata"]["name"]
    if controller is None:
        return f"{kind} {name} already exists and is not gpufleet's: rename or delete it"
    if controller.get("uid") in mine:
        return ""
    return (
        f"{kind} {name} already exists, controlled by {controller.get('kind')} "
        f"{controller.get('name')}: rename one of them"
    )
