"""The running operator: per-kind caches fed by Kopf's watches, work queues and their loops.

The runtime knows nothing of ModelPools or RoutingPolicies: each kind it serves is a
``Kind`` (its plural, the label its children carry to name their owner, its object
and status models, its reconcile function — see ``controller.kinds``). ``OperatorState``
is built once in the Kopf startup handler and passed to every handler through Kopf's
memo (no module-level state). For each kind a ``KindState`` holds:

- the objects from the kind's watch, each parsed once as it arrives
  (``controller.cache``), and Kopf indexes of their children and pods, which
  Kopf fills completely before any handler runs — so the first reconcile after a
  restart already sees every existing child and writes nothing that is in place;
- what the operator itself just applied or wrote to a status, so a reconcile that runs
  before the watch echoes a write does not repeat it;
- a ``WorkQueue`` of keys drained by ``workers`` loops, failures and their backoff, and
  a ``WatchTracker`` checked against a LIST every ``watch_check_seconds``.

A kind may *follow* another: when an object of the followed kind appears, disappears,
changes its labels or its spec, every object of the follower in that namespace is
re-queued (a RoutingPolicy's pool selector is matched against ModelPool labels; a
ModelPool's NetworkPolicy admits the routers of the policies that route it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import kopf
import pydantic

from gpufleet.controller import cache, kube, liveness, observe, ownership
from gpufleet.controller.workqueue import Key, WorkQueue
from gpufleet.operatorconfig import OperatorConfig

LOG = logging.getLogger("gpufleet.operator")
ChildIndex = Mapping[Key, Iterable[observe.ObservedChild]]
PodIndex = Mapping[Key, Iterable[observe.ObservedPod]]
T = TypeVar("T", bound=pydantic.BaseModel)
S = TypeVar("S", bound=pydantic.BaseModel)
Reconcile = Callable[["OperatorState", Key], Awaitable[None]]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Kind(Generic[T, S]):
    """One custom resource the operator serves: ``model`` and ``status_model`` are what
    its watch's bodies are parsed into, once, as they arrive (``controller.cache``).

    ``reconcile(state, key)`` brings one object to its spec and raises Kopf's exception
    types (``kopf.TemporaryError`` → retried after its delay, ``kopf.PermanentError`` →
    left alone until the spec changes). ``requeue_seconds``: reconcile every object again
    this long after a success (None: only on events and resyncs). ``close`` releases
    what the reconcile holds (an HTTP session) when the operator stops.
    """

    name: str
    plural: str
    owner_label: str
    model: type[T]
    status_model: type[S]
    reconcile: Reconcile
    follows: tuple[str, ...] = ()
    requeue_seconds: float | None = None
    close: Callable[[], Awaitable[None]] | None = None


@dataclasses.dataclass
class KindState(Generic[T, S]):
    """The caches and queue of one kind; the reconcilers' read side (``cache.Cache``)."""

    kind: Kind[T, S]
    child_indexes: tuple[ChildIndex, ...] = ()
    pod_index: PodIndex = dataclasses.field(default_factory=dict)
    replica_set_index: ChildIndex = dataclasses.field(default_factory=dict)
    queue: WorkQueue = dataclasses.field(default_factory=WorkQueue)
    tracker: liveness.WatchTracker = dataclasses.field(
        default_factory=lambda: liveness.WatchTracker(grace_seconds=90.0)
    )
    objects: dict[Key, cache.Cached[T, S]] = dataclasses.field(default_factory=dict)
    applied: dict[tuple[str, str, str], observe.ObservedChild] = dataclasses.field(
        default_factory=dict
    )
    statuses: dict[Key, tuple[int, S]] = dataclasses.field(default_factory=dict)
    permanent: dict[Key, int] = dataclasses.field(default_factory=dict)
    failures: dict[Key, int] = dataclasses.field(default_factory=dict)

    # --- what the watches deliver -------------------------------------------------
    def event(self, kind: str | None, body: Mapping[str, Any]) -> bool:
        """Record a watch event; True when the object appeared, vanished, was relabelled
        or its spec changed (what a follower reads of it)."""
        meta = body["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        if kind == "DELETED":
            self.tracker.delivered(key, None)
            self._forget(key)
            return True
        self.tracker.delivered(key, str(meta.get("resourceVersion", "")))
        k = self.kind
        parsed = cache.parse(body, kind=k.name, model=k.model, status_model=k.status_model)
        before = self.objects.get(key)
        self.objects[key] = parsed
        self.queue.add(key)
        return parsed.follows_differently(before)

    def child_event(self, key: Key) -> None:
        if key in self.objects:
            self.queue.add(key)

    def requeue_namespace(self, namespace: str) -> None:
        for key in self.keys_in(namespace):
            self.queue.add(key)

    def _forget(self, key: Key) -> None:
        for table in (self.objects, self.statuses, self.permanent, self.failures):
            table.pop(key, None)
        self.applied = {k: v for k, v in self.applied.items() if (k[1], v.owner) != key}
        self.queue.forget(key)

    # --- the reconcilers' cache --------------------------------------------------------
    def get(self, key: Key) -> cache.Cached[T, S] | None:
        return self.objects.get(key)

    def keys_in(self, namespace: str | None = None) -> list[Key]:
        return [k for k in self.objects if namespace is None or k[0] == namespace]

    def children(self, key: Key) -> dict[tuple[str, str], observe.ObservedChild]:
        out = {(c.kind, c.name): c for index in self.child_indexes for c in index.get(key, ())}
        for (kind, namespace, name), mine in list(self.applied.items()):
            if (namespace, mine.owner) != key:
                continue
            live = out.get((kind, name))
            if live is None or mine.newer_than(live):
                out[(kind, name)] = mine
            else:
                del self.applied[(kind, namespace, name)]  # the watch has caught up
        return out

    def pods(self, key: Key) -> list[observe.ObservedPod]:
        return list(self.pod_index.get(key, ()))

    def owned_pods(self, key: Key, deployment: str) -> list[observe.ObservedPod]:
        """The pods of ``key``'s Deployment ``deployment`` by their controller chain
        (``controller.ownership``), not by the labels any pod may carry."""
        found = self.objects.get(key)
        uid = found.uid if found is not None else ""
        live = self.children(key).get(("Deployment", deployment))
        sets = self.replica_set_index.get(key, ())
        return ownership.controlled_pods(uid, live, sets, self.pods(key))

    def remember_applied(self, obj: Mapping[str, Any]) -> None:
        child = observe.child(obj, owner_label=self.kind.owner_label)
        self.applied[(child.kind, child.namespace, child.name)] = child

    def forget_applied(self, kind: str, namespace: str, name: str) -> None:
        """A child the operator deleted: its last applied version no longer stands in."""
        self.applied.pop((kind, namespace, name), None)

    def previous_status(self, key: Key) -> S | None:
        written, seen = self.statuses.get(key), self.objects.get(key)
        if written is not None and (seen is None or written[0] > seen.version):
            return written[1]
        return seen.status if seen is not None else None

    def remember_status(self, key: Key, written: S, resource_version: str) -> None:
        version = int(resource_version) if resource_version.isdigit() else 0
        self.statuses[key] = (version, written)

    def backoff(self, key: Key, floor: float | None, ceiling: float) -> float:
        failures = self.failures[key] = self.failures.get(key, 0) + 1
        exponential = min(ceiling, 0.5 * 2.0**failures)
        return max(float(floor or 0.0), exponential)

    def generation(self, key: Key) -> int | None:
        found = self.objects.get(key)
        return None if found is None else found.generation


class Background(Protocol):
    """An operator-wide loop beside the kinds' own (the autoscaler): ``run`` until
    cancelled, then ``close`` what it holds."""

    async def run(self, state: OperatorState) -> None: ...

    async def close(self) -> None: ...


@dataclasses.dataclass
class OperatorState:
    """Everything the handlers and loops share; see the module docstring."""

    config: OperatorConfig
    client: kube.Kube
    kinds: dict[str, KindState[Any, Any]]
    clock: Callable[[], datetime.datetime] = utcnow
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    background: list[Background] = dataclasses.field(default_factory=list)

    def kind(self, name: str) -> KindState[Any, Any]:
        return self.kinds[name]

    # --- what the watches deliver -------------------------------------------------
    def object_event(self, kind: str, type_: str | None, body: Mapping[str, Any]) -> None:
        if self.kinds[kind].event(type_, body):
            namespace = str(body["metadata"]["namespace"])
            for follower in self.kinds.values():
                if kind in follower.kind.follows:
                    follower.requeue_namespace(namespace)

    def child_event(self, kind: str, key: Key) -> None:
        self.kinds[kind].child_event(key)

    # --- loops ----------------------------------------------------------------------
    def start(self) -> None:
        loops: list[Awaitable[None]] = []
        for state in self.kinds.values():
            state.tracker.grace_seconds = self.config.watch_grace_seconds
            loops += [self._worker(state) for _ in range(self.config.workers)]
            loops += [self._resync(state), self._check_watch(state)]
        loops += [loop.run(self) for loop in self.background]
        self.tasks = [asyncio.ensure_future(c) for c in loops]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for state in self.kinds.values():
            state.queue.close()
            if state.kind.close is not None:
                await state.kind.close()
        for loop in self.background:
            await loop.close()

    async def _worker(self, state: KindState[Any, Any]) -> None:
        while True:
            key = await state.queue.get()
            try:
                await self._reconcile(state, key)
            finally:
                state.queue.done(key)

    async def _reconcile(self, state: KindState[Any, Any], key: Key) -> None:
        name, generation = state.kind.name, state.generation(key)
        if generation is None or state.permanent.get(key) == generation:
            return
        ceiling = self.config.max_backoff_seconds
        try:
            await state.kind.reconcile(self, key)
        except kopf.TemporaryError as exc:
            delay = state.backoff(key, exc.delay, ceiling)
            LOG.info("%s %s/%s: retrying in %.1fs: %s", name, *key, delay, exc)
            state.queue.add_after(key, delay)
        except kopf.PermanentError as exc:
            LOG.warning("%s %s/%s: not retried until its spec changes: %s", name, *key, exc)
            state.permanent[key] = generation
        except Exception:
            delay = state.backoff(key, None, ceiling)
            LOG.exception("%s %s/%s: reconcile failed; retrying in %.1fs", name, *key, delay)
            state.queue.add_after(key, delay)
        else:
            state.failures.pop(key, None)
            if state.kind.requeue_seconds is not None:
                state.queue.add_after(key, state.kind.requeue_seconds)

    async def _resync(self, state: KindState[Any, Any]) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            for key in state.keys_in():
                if key not in state.failures:  # a failing object keeps its backoff
                    state.queue.add(key)

    async def _check_watch(self, state: KindState[Any, Any]) -> None:
        plural, namespaces = state.kind.plural, self.config.namespaces
        while True:
            await asyncio.sleep(self.config.watch_check_seconds)
            try:
                listed = await asyncio.to_thread(self.client.versions, plural, namespaces)
            except kube.KubeError as exc:
                LOG.info("%s watch check skipped: %s", state.kind.name, exc)
                continue
            state.tracker.check(listed, time.monotonic())

    def watch_health(self) -> dict[str, object]:
        """For the liveness probe: raises when a watch has missed changes."""
        now = time.monotonic()
        health: dict[str, object] = {}
        for state in self.kinds.values():
            stale = state.tracker.stale(now)
            if stale:
                names = ", ".join("/".join(k) for k in stale[:5])
                raise RuntimeError(
                    f"{state.kind.name} watch stale: the API server has changes to {names}"
                )
            health[state.kind.plural] = len(state.objects)
            health[f"{state.kind.plural}_queued"] = len(state.queue)
        return health
