"""Pod status as the twin's kubelet reports it, and pod IPs (pure).

``status`` renders the ``status`` of a pod on a KWOK node from what the runner knows of
each container: whether it runs, is ready, how often it restarted and how it last
ended. Conditions follow the kubelet's: ``Ready`` and ``ContainersReady`` are true only
when every container is ready. ``IpAllocator`` hands out pod IPs from the cluster's
loopback range round-robin, so an address freed by a deleted pod is not given to the
next pod while its old process may still hold it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class Terminated:
    """How a container's process last ended."""

    exit_code: int
    reason: str
    finished_at: str
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerState:
    """One container as the runner sees it."""

    name: str
    image: str
    ready: bool = False
    running_since: str | None = None
    waiting_reason: str | None = None
    waiting_message: str = ""
    restart_count: int = 0
    last_terminated: Terminated | None = None
    terminated: Terminated | None = None


def _terminated(t: Terminated) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": t.exit_code, "reason": t.reason, "finishedAt": t.finished_at}
    if t.message:
        out["message"] = t.message[-1024:]
    return out


def container_status(c: ContainerState) -> dict[str, Any]:
    state: dict[str, Any]
    if c.terminated is not None:
        state = {"terminated": _terminated(c.terminated)}
    elif c.running_since is not None:
        state = {"running": {"startedAt": c.running_since}}
    else:
        waiting: dict[str, Any] = {"reason": c.waiting_reason or "ContainerCreating"}
        if c.waiting_message:
            waiting["message"] = c.waiting_message[-1024:]
        state = {"waiting": waiting}
    out: dict[str, Any] = {
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "ready": c.ready,
        "started": c.running_since is not None,
        "restartCount": c.restart_count,
        "state": state,
    }
    if c.last_terminated is not None:
        out["lastState"] = {"terminated": _terminated(c.last_terminated)}
    return out


def _condition(kind: str, ok: bool, now: str, reason: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": "True" if ok else "False",
                           "lastTransitionTime": now}  # fmt: skip
    if not ok and reason:
        out["reason"] = reason
    return out


def phase(containers: Sequence[ContainerState], restart_policy: str) -> str:
    """Running while any container may still run; Succeeded/Failed once all ended for good."""
    if restart_policy == "Always" or any(c.terminated is None for c in containers):
        return "Running"
    failed = any(c.terminated is not None and c.terminated.exit_code != 0 for c in containers)
    return "Failed" if failed else "Succeeded"


def status(
    *,
    pod_ip: str,
    host_ip: str,
    started_at: str,
    now: str,
    containers: Sequence[ContainerState],
    restart_policy: str = "Always",
) -> dict[str, Any]:
    """The pod's ``status`` (camelCase, as sent to the API server)."""
    ready = bool(containers) and all(c.ready for c in containers)
    reason = "" if ready else "ContainersNotReady"
    return {
        "phase": phase(containers, restart_policy),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started_at,
        "conditions": [
            _condition("PodReadyToStartContainers", True, started_at),
            _condition("PodScheduled", True, started_at),
            _condition("Initialized", True, started_at),
            _condition("ContainersReady", ready, now, reason),
            _condition("Ready", ready, now, reason),
        ],
        "containerStatuses": [container_status(c) for c in containers],
    }


def ready_of(raw_status: dict[str, Any] | None) -> bool | None:
    """The Ready condition of a raw status (snake_case or camelCase keys), None if unset."""
    for cond in (raw_status or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return None


class IpAllocator:
    """Pod IPs from ``cidr``, round-robin, never one in ``in_use``.

    The cursor only moves forward, so a freed address comes back only after the whole
    range (65,534 addresses for a /16) has been handed out.
    """

    def __init__(self, cidr: str, *, reserved: Iterable[str] = ()) -> None:
        self._net = ipaddress.IPv4Network(cidr)
        self._cursor = 2  # .0 is the network, .1 is kept for the node
        self._reserved = set(reserved)

    def allocate(self, in_use: Iterable[str]) -> str:
        taken = set(in_use) | self._reserved
        size = self._net.num_addresses
        for _ in range(size):
            offset = self._cursor
            self._cursor = self._cursor + 1 if self._cursor + 1 < size - 1 else 2
            candidate = str(self._net.network_address + offset)
            if candidate not in taken:
                return candidate
        raise RuntimeError(f"no free pod IP left in {self._net}")

    def seen(self, address: str) -> None:
        """Move the cursor past ``address`` (an IP found on an existing pod at start)."""
        try:
            offset = int(ipaddress.IPv4Address(address)) - int(self._net.network_address)
        except ValueError:
            return
        if 2 <= offset < self._net.num_addresses - 1 and offset >= self._cursor:
            self._cursor = offset + 1 if offset + 1 < self._net.num_addresses - 1 else 2
