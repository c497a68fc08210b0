"""The running operator: caches fed by Kopf's watches, the work queue and its loops.

``OperatorState`` is built once in the Kopf startup handler and passed to every handler
through Kopf's memo (no module-level state). It holds:

- the ModelPools (from the pool watch) and Kopf indexes of the children and pods, which
  Kopf fills completely before any handler runs — so the first reconcile after a
  restart already sees every existing child and writes nothing that is in place;
- what the operator itself just applied or wrote to a status, so a reconcile that runs
  before the watch echoes a write does not repeat it;
- the ``WorkQueue`` of pool keys, ``workers`` loops draining it, a resync loop that
  re-queues every pool each ``resync_seconds``, and the watch-staleness checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from gpufleet.api.modelpool import ModelPoolStatus
from gpufleet.controller import kube, liveness, observe, reconciler
from gpufleet.controller.config import OperatorConfig
from gpufleet.controller.workqueue import Key, WorkQueue

LOG = logging.getLogger("gpufleet.operator")
ChildIndex = Mapping[Key, Iterable[observe.ObservedChild]]
PodIndex = Mapping[Key, Iterable[observe.ObservedPod]]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _version(raw: Mapping[str, Any]) -> int:
    rv = str(raw.get("metadata", {}).get("resourceVersion", ""))
    return int(rv) if rv.isdigit() else 0


@dataclasses.dataclass
class OperatorState:
    """Everything the handlers and loops share; see the module docstring."""

    config: OperatorConfig
    client: kube.Kube
    child_indexes: tuple[ChildIndex, ...]
    pod_index: PodIndex
    clock: Callable[[], datetime.datetime] = utcnow
    queue: WorkQueue = dataclasses.field(default_factory=WorkQueue)
    tracker: liveness.WatchTracker = dataclasses.field(
        default_factory=lambda: liveness.WatchTracker(grace_seconds=90.0)
    )
    pools: dict[Key, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    applied: dict[tuple[str, str, str], observe.ObservedChild] = dataclasses.field(
        default_factory=dict
    )
    statuses: dict[Key, tuple[int, ModelPoolStatus]] = dataclasses.field(default_factory=dict)
    permanent: dict[Key, int] = dataclasses.field(default_factory=dict)
    failures: dict[Key, int] = dataclasses.field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    # --- what the watches deliver -------------------------------------------------
    def pool_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        if kind == "DELETED":
            self.tracker.delivered(key, None)
            self._forget(key)
            return
        self.tracker.delivered(key, str(meta.get("resourceVersion", "")))
        plain = observe.plain(body)
        assert isinstance(plain, dict)
        self.pools[key] = plain
        self.queue.add(key)

    def child_event(self, key: Key) -> None:
        if key in self.pools:
            self.queue.add(key)

    def _forget(self, key: Key) -> None:
        for table in (self.pools, self.statuses, self.permanent, self.failures):
            table.pop(key, None)
        self.applied = {k: v for k, v in self.applied.items() if (k[1], v.pool) != key}
        self.queue.forget(key)

    # --- reconciler.Cache -----------------------------------------------------------
    def pool(self, key: Key) -> Mapping[str, Any] | None:
        return self.pools.get(key)

    def children(self, key: Key) -> dict[tuple[str, str], observe.ObservedChild]:
        out = {(c.kind, c.name): c for index in self.child_indexes for c in index.get(key, ())}
        for (kind, namespace, name), mine in list(self.applied.items()):
            if (namespace, mine.pool) != key:
                continue
            live = out.get((kind, name))
            if live is None or mine.newer_than(live):
                out[(kind, name)] = mine
            else:
                del self.applied[(kind, namespace, name)]  # the watch has caught up
        return out

    def pods(self, key: Key) -> list[observe.ObservedPod]:
        return list(self.pod_index.get(key, ()))

    def remember_applied(self, obj: Mapping[str, Any]) -> None:
        child = observe.child(obj)
        self.applied[(child.kind, child.namespace, child.name)] = child

    def previous_status(self, key: Key, body: Mapping[str, Any]) -> ModelPoolStatus | None:
        written = self.statuses.get(key)
        if written is not None and written[0] > _version(body):
            return written[1]
        try:
            return ModelPoolStatus.model_validate(body.get("status") or {})
        except ValueError:
            return None

    def remember_status(self, key: Key, written: ModelPoolStatus, resource_version: str) -> None:
        version = int(resource_version) if resource_version.isdigit() else 0
        self.statuses[key] = (version, written)

    # --- loops ----------------------------------------------------------------------
    def start(self) -> None:
        self.tracker.grace_seconds = self.config.watch_grace_seconds
        loops = [self._worker() for _ in range(self.config.workers)]
        loops += [self._resync(), self._check_watch()]
        self.tasks = [asyncio.create_task(c) for c in loops]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.queue.close()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._reconcile(key)
            finally:
                self.queue.done(key)

    def _backoff(self, key: Key, floor: float | None) -> float:
        failures = self.failures[key] = self.failures.get(key, 0) + 1
        exponential = min(self.config.max_backoff_seconds, 0.5 * 2.0**failures)
        return max(float(floor or 0.0), exponential)

    async def _reconcile(self, key: Key) -> None:
        raw = self.pools.get(key)
        generation = int((raw or {}).get("metadata", {}).get("generation", 0) or 0)
        if raw is None or self.permanent.get(key) == generation:
            return
        try:
            await reconciler.reconcile(key, cache=self, client=self.client, clock=self.clock)
        except kopf.TemporaryError as exc:
            delay = self._backoff(key, exc.delay)
            LOG.info("pool %s/%s: retrying in %.1fs: %s", *key, delay, exc)
            self.queue.add_after(key, delay)
        except kopf.PermanentError as exc:
            LOG.warning("pool %s/%s: not retried until its spec changes: %s", *key, exc)
            self.permanent[key] = generation
        except Exception:
            delay = self._backoff(key, None)
            LOG.exception("pool %s/%s: reconcile failed; retrying in %.1fs", *key, delay)
            self.queue.add_after(key, delay)
        else:
            self.failures.pop(key, None)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            for key in list(self.pools):
                if key not in self.failures:  # a failing pool keeps its backoff
                    self.queue.add(key)

    async def _check_watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.watch_check_seconds)
            try:
                listed = await asyncio.to_thread(self.client.pool_versions, self.config.namespaces)
            except kube.KubeError as exc:
                LOG.info("watch check skipped: %s", exc)
                continue
            self.tracker.check(listed, time.monotonic())

    def watch_health(self) -> dict[str, object]:
        """For the liveness probe: raises when the pool watch has missed changes."""
        stale = self.tracker.stale(time.monotonic())
        if stale:
            names = ", ".join("/".join(k) for k in stale[:5])
            raise RuntimeError(f"ModelPool watch stale: the API server has changes to {names}")
        return {"pools": len(self.pools), "queued": len(self.queue)}
