"""Registering the fleet's KWOK nodes with the API server.

A node is created with its labels, taints, capacity and allocatable in one request;
KWOK then marks it Ready and renews its Lease. An existing node of the same name is
left as it is (idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufleet import kube
from gpufleet.devcluster import errors, fleet


def api_client(kubeconfig: Path) -> client.ApiClient:
    return kube.new_client(kubeconfig)


def _create(core: client.CoreV1Api, body: fleet.NodeBody) -> None:
    """Create the node with its status in one request.

    The API server keeps a Node's status on create (kubelets register that way), and
    one request leaves no window in which KWOK could see the node without capacity
    and write that back over a later status patch.
    """
    try:
        core.create_node(body)  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise


# Taints the node lifecycle controller puts on a node until it has seen it Ready.
_STARTUP_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


def _schedulable(node: client.V1Node) -> bool:
    conditions = (node.status and node.status.conditions) or []
    taints = (node.spec and node.spec.taints) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return ready and not any(t.key in _STARTUP_TAINTS for t in taints)


def _ready_names(core: client.CoreV1Api) -> set[str]:
    """Nodes that are Ready and no longer carry the controller's start-up taints."""
    return {str(n.metadata.name) for n in core.list_node().items if n.metadata and _schedulable(n)}


def wait_ready(core: client.CoreV1Api, wanted: set[str], *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = wanted - _ready_names(core)
        if not missing:
            return
        time.sleep(0.5)
    raise errors.StartFailed(
        f"KWOK nodes not Ready after {timeout:.0f}s: {', '.join(sorted(missing))}"
    )


def create(core: client.CoreV1Api, body: fleet.NodeBody) -> None:
    """Register one KWOK node (see ``_create``); tests use it to grow a fleet."""
    _create(core, body)


def register(
    kubeconfig: Path, bodies: Sequence[fleet.NodeBody], *, progress: Callable[[str], None]
) -> int:
    """Create every node in ``bodies`` and wait until all are Ready; returns the count."""
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for index, body in enumerate(bodies, start=1):
            _create(core, body)
            if index % 10 == 0 or index == len(bodies):
                progress(f"  registered {index}/{len(bodies)} nodes")
        wait_ready(core, {b["metadata"]["name"] for b in bodies})
    return len(bodies)
