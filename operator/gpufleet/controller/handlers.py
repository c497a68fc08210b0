"""Kopf registrations: thin handlers that feed ``controller.runtime.OperatorState``.

The Kopf entry point: ``kopf run -m gpufleet.controller.handlers`` (``gpufleet operator``
imports this module). For each kind of ``controller.kinds`` Kopf watches the objects,
indexes the children and pods that carry the kind's owner label, and re-queues the owner
when one of them changes; the reconcile itself runs in the runtime's work queues
(per-object serialised, de-duplicated, level-triggered). None of these handlers writes
to the API, and none needs a finalizer: children are owned through ownerReferences and
the garbage collector removes them with their owner — so Kopf adds no finalizer or
progress annotation, and an idle operator writes nothing.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import kopf

from gpufleet import labels as contract
from gpufleet.api import common
from gpufleet.controller import kinds, kube, observe, runtime
from gpufleet.operatorconfig import OperatorConfig

Resource = tuple[str, str, str]
# The children each kind owns, by owner label; pods are indexed apart.
CHILDREN: dict[str, tuple[Resource, ...]] = {
    contract.POOL: (
        ("apps", "v1", "deployments"),
        ("", "v1", "services"),
        ("policy", "v1", "poddisruptionbudgets"),
        ("networking.k8s.io", "v1", "networkpolicies"),
    ),
    contract.ROUTING_POLICY: (
        ("", "v1", "configmaps"),
        ("", "v1", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "v1", "roles"),
        ("rbac.authorization.k8s.io", "v1", "rolebindings"),
        ("apps", "v1", "deployments"),
        ("", "v1", "services"),
        ("policy", "v1", "poddisruptionbudgets"),
    ),
}
# The pods each kind indexes, besides its owner label: a policy's are its routers.
POD_COMPONENT = {contract.POOL: contract.MODEL_SERVER, contract.ROUTING_POLICY: contract.ROUTER}
# The kinds whose pods the operator sends requests to (a router's /stats) also index
# the ReplicaSets between their Deployment and its pods: a pod is theirs by that
# controller chain, not by labels (controller.ownership). Never children: not pruned.
REPLICA_SETS = frozenset({contract.ROUTING_POLICY})
OWNERS = {
    kinds.MODEL_POOL: (contract.POOL, "modelpools"),
    kinds.ROUTING_POLICY: (contract.ROUTING_POLICY, "routingpolicies"),
}


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf settings the operator relies on (see docs/operator.md)."""
    settings.peering.standalone = True  # one replica, Recreate; peering is no leader election
    settings.scanning.disabled = True  # fixed namespaces or cluster-wide: no CRD/ns watching
    settings.posting.level = logging.WARNING  # Events are posted on transitions, not per log
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60


def _state(memo: kopf.Memo) -> runtime.OperatorState:
    state: runtime.OperatorState = memo["gpufleet_state"]
    return state


def _index_id(owner_label: str, resource: Resource) -> str:
    return f"gpufleet_{owner_label.rsplit('/', 1)[-1].replace('-', '_')}_{resource[2]}"


def _indexes(owner_label: str) -> tuple[list[str], str]:
    return [_index_id(owner_label, r) for r in CHILDREN[owner_label]], _index_id(
        owner_label, ("", "v1", "pods")
    )


def _replica_set_index(owner_label: str) -> str:
    return _index_id(owner_label, ("apps", "v1", "replicasets"))


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    configure(settings)
    config = memo.get("gpufleet_config") or OperatorConfig.from_env()
    operator = kinds.build(config)
    states: dict[str, runtime.KindState[Any, Any]] = {}
    for kind in operator.kinds:
        children, pods = _indexes(kind.owner_label)
        states[kind.name] = runtime.KindState(
            kind=kind,
            child_indexes=tuple(kwargs[name] for name in children),
            pod_index=kwargs[pods],
            replica_set_index=kwargs.get(_replica_set_index(kind.owner_label), {}),
        )
    state = runtime.OperatorState(
        config=config,
        client=kube.Kube(kube.new_client(config.kubeconfig)),
        kinds=states,
        background=list(operator.background),
    )
    memo["gpufleet_state"] = state
    state.start()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The in-cluster ServiceAccount, else ``$KUBECONFIG`` read now — not when the
    ``kubernetes`` library was imported, which is before ``--kubeconfig`` is known."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    state = _state(memo)
    await state.stop()
    state.client.api.close()  # type: ignore[no-untyped-call]


@kopf.on.probe(id="watch")
def watch_probe(memo: kopf.Memo, **_: Any) -> dict[str, object]:
    return _state(memo).watch_health()


def _key(owner_label: str, namespace: str | None, labels: kopf.Labels) -> tuple[str, str]:
    return (namespace or "", labels[owner_label])


def _register(kind: str, owner_label: str, plural: str) -> None:
    """The watch of ``kind``, and indexes plus events of its children and pods."""
    owned: dict[str, Any] = {
        contract.MANAGED_BY: contract.MANAGED_BY_VALUE,
        owner_label: kopf.PRESENT,
    }
    key = functools.partial(_key, owner_label)

    def index_child(
        namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[tuple[str, str], observe.ObservedChild]:
        return {key(namespace, labels): observe.child(body, owner_label=owner_label)}

    def index_pod(
        namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[tuple[str, str], observe.ObservedPod]:
        return {key(namespace, labels): observe.pod(body)}

    def object_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        _state(memo).object_event(kind, type, body)

    def child_event(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
        _state(memo).child_event(kind, key(namespace, labels))

    children, pods = _indexes(owner_label)
    pod_labels = owned | {contract.COMPONENT: POD_COMPONENT[owner_label]}
    for resource, index_id in zip(CHILDREN[owner_label], children, strict=True):
        kopf.index(*resource, labels=owned, id=index_id)(index_child)
        kopf.on.event(*resource, labels=owned, id=f"{index_id}_event")(child_event)
    kopf.index("", "v1", "pods", labels=pod_labels, id=pods)(index_pod)
    if owner_label in REPLICA_SETS:
        sets = _replica_set_index(owner_label)
        kopf.index("apps", "v1", "replicasets", labels=pod_labels, id=sets)(index_child)
    kopf.on.event("", "v1", "pods", labels=pod_labels, id=f"{pods}_event")(child_event)
    kopf.on.event(common.GROUP, common.VERSION, plural, id=f"gpufleet_{plural}")(object_event)


for _kind, (_label, _plural) in OWNERS.items():
    _register(_kind, _label, _plural)
