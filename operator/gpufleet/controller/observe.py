"""What the operator reads back from the cluster, as small frozen values.

Pure projections of raw watch bodies (``Mapping`` views, as Kopf hands them over) into
``ObservedChild`` and ``ObservedPod``, plus the two questions the plan asks of them:
does the live object still contain everything the intent says (``contains``: an edit
made out of band shows up as a difference), and has someone else taken ``replicas``
(``replicas_owned_by_others``: the autoscaler, ``kubectl scale``)?
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any

from gpufleet import labels
from gpufleet.controller import bodies

# Managers that write a Deployment's status or bookkeeping, never its intent.
_SYSTEM_MANAGERS = frozenset({"kube-controller-manager"})


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedChild:
    """A child object as it is now; ``body`` is its JSON without status and managedFields."""

    kind: str
    namespace: str
    name: str
    uid: str
    owner: str
    spec_hash: str
    body: bodies.Json
    replicas: int | None = None
    ready_replicas: int = 0
    updated_replicas: int = 0
    generation: int = 0
    observed_generation: int = 0
    replicas_managers: frozenset[str] = frozenset()
    resource_version: str = ""
    controller: str = ""  # the uid of its controlling ownerReference; empty: none

    def newer_than(self, other: ObservedChild) -> bool:
        """Whether this is a later version of the same object (resourceVersions of one
        object grow; when they are not numbers, trust the later observation)."""
        mine, theirs = self.resource_version, other.resource_version
        if self.uid != other.uid or not (mine.isdigit() and theirs.isdigit()):
            return True
        return int(mine) > int(theirs)

    @property
    def rolled_out(self) -> bool:
        """The Deployment controller has seen the latest spec and updated every replica."""
        return self.observed_generation >= self.generation and self.updated_replicas >= (
            self.replicas or 0
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedPod:
    """A pool's or router's pod: where it runs and, when the scheduler cannot place it,
    why; its address, and the annotations the operator keeps on it (None: absent)."""

    name: str
    variant: str
    node: str
    phase: str
    ready: bool
    unschedulable: str = ""
    ip: str = ""
    uid: str = ""
    cost: str | None = None
    kv_cache_tokens: str | None = None  # the operator's KV-cache annotation (None: absent)
    started: float | None = None  # status.startTime, else creation; seconds since the epoch
    controller: str = ""  # the uid of its controlling ownerReference (its ReplicaSet)


def _field(obj: Mapping[str, Any], *path: str, default: Any = None) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def plain(value: Any) -> bodies.Json:
    """A detached JSON copy of a (possibly read-only, Kopf-owned) mapping."""
    result: bodies.Json = json.loads(json.dumps(value, default=dict))
    return result


def controller_uid(meta: Any) -> str:
    """The uid of the ``ownerReference`` marked ``controller``; empty when there is none."""
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    for ref in refs if isinstance(refs, list | tuple) else ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return str(ref.get("uid", ""))
    return ""


def replicas_managers(managed_fields: Any) -> frozenset[str]:
    """Field managers that own ``spec.replicas`` (by Apply or Update, scale included)."""
    owners = set()
    for entry in managed_fields or ():
        fields = _field(entry, "fieldsV1", "f:spec", default={})
        if isinstance(fields, Mapping) and "f:replicas" in fields:
            owners.add(str(entry.get("manager", "")))
    return frozenset(owners - _SYSTEM_MANAGERS)


def child(obj: Mapping[str, Any], *, owner_label: str = labels.POOL) -> ObservedChild:
    """Project a child body; ``owner`` is its ``owner_label`` label (the owning object's name)."""
    meta = obj.get("metadata", {})
    body = plain({k: v for k, v in obj.items() if k != "status"})
    live_meta = body.get("metadata") if isinstance(body, dict) else None
    if isinstance(live_meta, dict):
        live_meta.pop("managedFields", None)
    replicas = _field(obj, "spec", "replicas")
    return ObservedChild(
        kind=str(obj.get("kind", "")),
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        owner=str(_field(meta, "labels", owner_label, default="")),
        spec_hash=str(_field(meta, "annotations", labels.SPEC_HASH, default="")),
        body=body,
        replicas=replicas if isinstance(replicas, int) else None,
        ready_replicas=int(_field(obj, "status", "readyReplicas", default=0) or 0),
        updated_replicas=int(_field(obj, "status", "updatedReplicas", default=0) or 0),
        generation=int(meta.get("generation", 0) or 0),
        observed_generation=int(_field(obj, "status", "observedGeneration", default=0) or 0),
        replicas_managers=replicas_managers(meta.get("managedFields")),
        resource_version=str(meta.get("resourceVersion", "")),
        controller=controller_uid(meta),
    )


def _unschedulable(conditions: Any) -> str:
    for cond in conditions or ():
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message") or "no node fits the pod")
    return ""


def epoch(timestamp: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp; None when absent or malformed."""
    if not isinstance(timestamp, str) or not timestamp:
        return None
    try:
        return datetime.datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


def pod(obj: Mapping[str, Any]) -> ObservedPod:
    """Project a pod body."""
    conditions = _field(obj, "status", "conditions", default=()) or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    cost = _field(obj, "metadata", "annotations", labels.COST_ANNOTATION)
    tokens = _field(obj, "metadata", "annotations", labels.KV_CACHE_TOKENS_ANNOTATION)
    return ObservedPod(
        name=str(_field(obj, "metadata", "name", default="")),
        variant=str(_field(obj, "metadata", "labels", labels.VARIANT, default="")),
        node=str(_field(obj, "spec", "nodeName", default="") or ""),
        phase=str(_field(obj, "status", "phase", default="") or ""),
        ready=ready,
        unschedulable=_unschedulable(conditions),
        ip=str(_field(obj, "status", "podIP", default="") or ""),
        uid=str(_field(obj, "metadata", "uid", default="")),
        cost=None if cost is None else str(cost),
        kv_cache_tokens=None if tokens is None else str(tokens),
        started=epoch(
            _field(obj, "status", "startTime") or _field(obj, "metadata", "creationTimestamp")
        ),
        controller=controller_uid(obj.get("metadata")),
    )


def contains(live: bodies.Json, intent: bodies.Json) -> bool:
    """Whether every field of ``intent`` has the same value in ``live``.

    Maps may hold more keys live (defaults, other managers' fields); lists must have the
    same length and contain the intent's items position by position.
    """
    if isinstance(intent, dict):
        return isinstance(live, dict) and all(
            key in live and contains(live[key], value) for key, value in intent.items()
        )
    if isinstance(intent, list):
        return (
            isinstance(live, list)
            and len(live) == len(intent)
            and all(contains(a, b) for a, b in zip(live, intent, strict=True))
        )
    return live == intent
