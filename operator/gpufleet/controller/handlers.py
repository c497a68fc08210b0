"""Kopf registrations: thin handlers that feed ``controller.runtime.OperatorState``.

Kopf watches, indexes and probes; the reconcile itself runs in the state's work queue
(per-pool serialised, de-duplicated, level-triggered). None of these handlers writes to
the API, and none needs a finalizer: children are owned through ownerReferences and
the garbage collector removes them with their pool — so Kopf adds no finalizer or
progress annotation, and an idle operator writes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from gpufleet import labels as contract
from gpufleet.api import common
from gpufleet.controller import kube, observe, runtime
from gpufleet.controller.config import OperatorConfig

POOLS = (common.GROUP, common.VERSION, "modelpools")
CHILDREN = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("policy", "v1", "poddisruptionbudgets"),
)
OWNED: dict[str, Any] = {
    contract.MANAGED_BY: contract.MANAGED_BY_VALUE,
    contract.POOL: kopf.PRESENT,
}
CHILD_INDEXES = ("gpufleet_deployments", "gpufleet_services", "gpufleet_pdbs")
POD_INDEX = "gpufleet_pods"


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


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    configure(settings)
    config = memo.get("gpufleet_config") or OperatorConfig.from_env()
    state = runtime.OperatorState(
        config=config,
        client=kube.Kube(kube.new_client(config.kubeconfig)),
        child_indexes=tuple(kwargs[name] for name in CHILD_INDEXES),
        pod_index=kwargs[POD_INDEX],
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


def _key(namespace: str | None, labels: kopf.Labels) -> tuple[str, str]:
    return (namespace or "", labels[contract.POOL])


@kopf.index("apps", "v1", "deployments", labels=OWNED, id=CHILD_INDEXES[0])
@kopf.index("", "v1", "services", labels=OWNED, id=CHILD_INDEXES[1])
@kopf.index("policy", "v1", "poddisruptionbudgets", labels=OWNED, id=CHILD_INDEXES[2])
def index_child(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], observe.ObservedChild]:
    return {_key(namespace, labels): observe.child(body)}


@kopf.index("", "v1", "pods", labels=OWNED, id=POD_INDEX)
def index_pod(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], observe.ObservedPod]:
    return {_key(namespace, labels): observe.pod(body)}


@kopf.on.event(*POOLS)
def pool_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _state(memo).pool_event(type, body)


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OWNED)
@kopf.on.event("", "v1", "pods", labels=OWNED)
def child_event(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    _state(memo).child_event(_key(namespace, labels))


@kopf.on.probe(id="watch")
def watch_probe(memo: kopf.Memo, **_: Any) -> dict[str, object]:
    return _state(memo).watch_health()
