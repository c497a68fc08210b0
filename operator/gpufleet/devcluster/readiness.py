"""When a KWOK fleet counts as up, how long to wait for it, and when to say how far it got.

Pure: a node is *schedulable* once it reports Ready and the node lifecycle controller
has taken off the start-up taints it puts on every new node (the scheduler skips a
node until then). ``Tally`` follows the wanted nodes through the raw Node objects a
list or watch returns; ``ready_timeout`` grows with the fleet, since the control plane
registers and untaints nodes at a bounded rate; ``Pacer`` keeps progress to a line
every few seconds whatever the fleet's size. Times are passed in, never read here.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import TypedDict, cast

from gpufleet.devcluster import errors

# Taints the node lifecycle controller keeps on a node until it has seen it Ready.
STARTUP_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})

# Measured on 2 shared cores (bench/fleet_scale.py): ~50 nodes/s from create to
# schedulable at 1,000 nodes, ~25/s at 5,000. The timeout allows several times that, so
# it only trips when something is stuck, and never drops below what 15 nodes needed
# before fleets grew.
_BASE_TIMEOUT_S = 60.0
_TIMEOUT_PER_NODE_S = 0.12
_MIN_TIMEOUT_S = 90.0

# Concurrent creates: enough to keep the API server busy on two cores; more only
# queues behind it (and the client keeps ten connections per host by default).
MAX_CREATE_WORKERS = 8


class RawCondition(TypedDict, total=False):
    type: str
    status: str


class RawTaint(TypedDict, total=False):
    key: str
    effect: str


class RawNodeMeta(TypedDict, total=False):
    name: str
    resourceVersion: str


class RawNodeSpec(TypedDict, total=False):
    taints: list[RawTaint]


class RawNodeStatus(TypedDict, total=False):
    conditions: list[RawCondition]


class RawNode(TypedDict, total=False):
    """The parts of a Node (as the API server's JSON has it) that readiness reads."""

    metadata: RawNodeMeta
    spec: RawNodeSpec
    status: RawNodeStatus


class RawEvent(TypedDict, total=False):
    """One line of a watch on nodes."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or ERROR
    object: RawNode  # for ERROR, a Status with ``code`` and ``message`` instead


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again and watch from there."""


class NodeState(enum.Enum):
    PENDING = "pending"
    READY = "ready"  # Ready, still carrying a start-up taint
    SCHEDULABLE = "schedulable"


def state_of(node: RawNode) -> NodeState:
    conditions = node.get("status", {}).get("conditions") or []
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return NodeState.PENDING
    taints = node.get("spec", {}).get("taints") or []
    if any(t.get("key") in STARTUP_TAINTS for t in taints):
        return NodeState.READY
    return NodeState.SCHEDULABLE


def ready_timeout(count: int) -> float:
    """Seconds to wait for ``count`` freshly created nodes to become schedulable."""
    return max(_MIN_TIMEOUT_S, _BASE_TIMEOUT_S + _TIMEOUT_PER_NODE_S * count)


@dataclasses.dataclass(frozen=True, slots=True)
class Deadline:
    """``seconds`` allowed from ``start`` (both in ``time.monotonic()`` terms)."""

    start: float
    seconds: float

    @classmethod
    def for_fleet(cls, count: int, *, now: float) -> Deadline:
        return cls(now, ready_timeout(count))

    def left(self, now: float) -> float:
        return self.start + self.seconds - now


def create_workers(count: int) -> int:
    """Concurrent create requests for ``count`` nodes (at least one)."""
    return max(1, min(MAX_CREATE_WORKERS, count))


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    total: int
    ready: int  # Ready, whether or not still tainted
    schedulable: int

    def line(self) -> str:
        return f"{self.ready}/{self.total} Ready, {self.schedulable}/{self.total} schedulable"


@dataclasses.dataclass(slots=True)
class Tally:
    """The state of each wanted node, as last observed; other nodes are ignored.

    Counts are kept as nodes change, so an observation costs the same whatever the
    fleet's size (a watch on 5,000 nodes brings tens of thousands of events).
    """

    wanted: frozenset[str]
    states: dict[str, NodeState] = dataclasses.field(default_factory=dict)
    _per_state: dict[NodeState, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(NodeState, 0)
    )

    def observe(self, node: RawNode) -> None:
        name = node.get("metadata", {}).get("name", "")
        if name in self.wanted:
            self.forget(name)
            state = self.states[name] = state_of(node)
            self._per_state[state] += 1

    def forget(self, name: str) -> None:
        old = self.states.pop(name, None)
        if old is not None:
            self._per_state[old] -= 1

    def reset(self, nodes: Iterable[RawNode]) -> None:
        """Replace every observation with those of a fresh list."""
        for name in list(self.states):
            self.forget(name)
        for node in nodes:
            self.observe(node)

    def counts(self) -> Counts:
        schedulable = self._per_state[NodeState.SCHEDULABLE]
        ready = self._per_state[NodeState.READY] + schedulable
        return Counts(total=len(self.wanted), ready=ready, schedulable=schedulable)

    @property
    def done(self) -> bool:
        return self._per_state[NodeState.SCHEDULABLE] == len(self.wanted)

    def missing(self, limit: int = 10) -> str:
        """Up to ``limit`` nodes not yet schedulable, each with its state, for an error."""
        late = sorted(n for n in self.wanted if self.states.get(n) != NodeState.SCHEDULABLE)
        shown = [f"{n} ({self.states.get(n, NodeState.PENDING).value})" for n in late[:limit]]
        more = f" and {len(late) - limit} more" if len(late) > limit else ""
        return ", ".join(shown) + more


def apply(tally: Tally, event: RawEvent, since: str) -> str:
    """Apply one watch event to ``tally``; returns the resourceVersion to resume after it.

    Raises ``Expired`` for 410 Gone and ``StartFailed`` for any other error event.
    """
    kind, obj = event.get("type"), event.get("object") or RawNode()
    if kind == "ERROR":
        status = cast(Mapping[str, object], obj)
        if status.get("code") == 410:
            raise Expired
        raise errors.StartFailed(f"watching nodes: {status.get('message', status)}")
    if kind in ("ADDED", "MODIFIED"):
        tally.observe(obj)
    elif kind == "DELETED":
        tally.forget(obj.get("metadata", {}).get("name", ""))
    return obj.get("metadata", {}).get("resourceVersion", since)


@dataclasses.dataclass(slots=True)
class Pacer:
    """Says when another progress line is due: at most one every ``every`` seconds."""

    every: float
    last: float | None = None

    def due(self, now: float) -> bool:
        if self.last is not None and now - self.last < self.every:
            return False
        self.last = now
        return True
