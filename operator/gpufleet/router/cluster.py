"""The router's view of its cluster, kept by watches rather than by listing.

``cluster_loop`` runs, for a router with ``kubernetes`` discovery, the watches
``discovery.watch_specs`` asks for (``kubewatch``: one thread each) and caches what
they report. Changes are debounced (``DEBOUNCE_S``) and then settled in one pass on
the event loop: a changed ConfigMap or key Secret is resolved into the next
configuration (``liveconfig``) and applied (``reconfigure``), or the error recorded
while the last good configuration keeps serving; the wanted watches are recomputed
(new pools, Secrets or ConfigMap restart theirs); and the endpoints are recomputed from
the cached pods (and EndpointSlices) once every wanted listing has arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from gpufleet.router import appkeys, discovery, liveconfig, reconfigure
from gpufleet.router.config import ConfigError, RouterConfig
from gpufleet.router.kubewatch import Delete, Event, Raw, Reset, Resource, Spec, Upsert, Watch
from gpufleet.router.service import Router
from gpufleet.routing import admission

log = logging.getLogger("gpufleet.router.cluster")
DEBOUNCE_S = 0.1
_CONFIG: frozenset[Resource] = frozenset({"configmaps", "secrets"})


class Cluster:
    """Watches, their caches, and what follows from them for one router."""

    def __init__(self, router: Router, api: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.router, self._api, self._loop = router, api, loop
        self.watches: dict[Spec, Watch] = {}
        self.cache: dict[Spec, dict[str, Raw]] = {}
        self.synced: set[Spec] = set()
        self.changed = asyncio.Event()
        self._config_changed = False
        self._applied: tuple[RouterConfig, frozenset[tuple[str, bytes]]] | None = None

    def deliver(self, watch: Watch, event: Event) -> None:
        """Take one event (on the event loop); a stopped watch's are dropped."""
        spec = watch.spec
        if self.watches.get(spec) is not watch:
            return
        items = self.cache.setdefault(spec, {})
        if isinstance(event, Reset):
            self.cache[spec] = dict(event.items)
            self.synced.add(spec)
        elif isinstance(event, Upsert):
            items[event.name] = event.item
        elif isinstance(event, Delete):
            items.pop(event.name, None)
        self._config_changed |= spec.resource in _CONFIG
        self.changed.set()

    def settle(self) -> None:
        """Apply what the events since the last pass imply."""
        if self._config_changed and self._synced(_CONFIG):
            self._config_changed = False
            self._reload()
        self.sync_watches()
        if self._synced({"pods", "endpointslices"}):
            self._refresh_endpoints()

    def sync_watches(self) -> None:
        """Start the watches the configuration wants now and stop the others."""
        wanted = discovery.watch_specs(self.router.config, self._routed())
        for spec in set(self.watches) - wanted:
            self.watches.pop(spec).stop()
            self.cache.pop(spec, None)
            self.synced.discard(spec)
        for spec in wanted - set(self.watches):
            watch = Watch(self._api, spec, self.deliver, self._loop)
            self.watches[spec] = watch
            watch.start()
            if spec.resource in _CONFIG:
                self._config_changed = True

    def stop(self) -> None:
        for watch in self.watches.values():
            watch.stop()
        self.watches.clear()

    def _items(self, resource: Resource) -> Iterator[Raw]:
        for spec, items in self.cache.items():
            if spec.resource == resource and spec in self.watches:
                yield from items.values()

    def _synced(self, resources: frozenset[Resource] | set[Resource]) -> bool:
        return all(s in self.synced for s in self.watches if s.resource in resources)

    def _routed(self) -> list[str]:
        matched = [str((p.get("metadata") or {}).get("name")) for p in self._items("modelpools")]
        return discovery.pools(self.router.config, matched)

    def _reload(self) -> None:
        secrets = {_name(s): dict(s.get("data") or {}) for s in self._items("secrets")}
        maps = [dict(m.get("data") or {}) for m in self._items("configmaps")]
        router = self.router
        try:
            resolved = liveconfig.resolve(
                router.config, config_map=maps[0] if maps else None, secrets=secrets
            )
        except ConfigError as exc:
            if reconfigure.reject(router, str(exc)):
                log.error("configuration change not applied (the last good one serves): %s", exc)
            return
        applied = (resolved.config, _digests(resolved.keys))
        if applied == self._applied and not router.config_state.error:
            return
        self._applied = applied
        reconfigure.apply(router, resolved, at=time.time())
        log.info("configuration applied (policy generation %s)", resolved.config.policy_generation)

    def _refresh_endpoints(self) -> None:
        config, router = self.router.config, self.router
        pods = list(self._items("pods"))
        if config.kubernetes is not None and config.kubernetes.source == "pods":
            found = discovery.endpoints_from_pods(config, pods)
        else:
            slices = list(self._items("endpointslices"))
            found = discovery.endpoints_from_slices(config, slices, discovery.pod_infos(pods))
        before = set(router.registry.slots)
        router.registry.replace(discovery.weigh(config, router.learner, found))
        after = set(router.registry.slots)
        if before != after:
            log.info("endpoints: +%d -%d, %d routable", len(after - before),
                     len(before - after), len(after))  # fmt: skip


def _name(item: Raw) -> str:
    return str((item.get("metadata") or {}).get("name", ""))


def _digests(keys: dict[str, str]) -> frozenset[tuple[str, bytes]]:
    """What tells key sets apart without keeping the keys."""
    return frozenset((t, admission.digest(k)) for t, k in keys.items())


async def cluster_loop(app: web.Application) -> None:
    router = app[appkeys.ROUTER]
    source = router.config.kubernetes
    assert source is not None
    api = await asyncio.to_thread(_api_client, source.kubeconfig)
    cluster = Cluster(router, api, asyncio.get_running_loop())
    try:
        cluster.sync_watches()
        while True:
            await cluster.changed.wait()
            await asyncio.sleep(DEBOUNCE_S)
            cluster.changed.clear()
            cluster.settle()
    finally:
        cluster.stop()
        await asyncio.to_thread(api.close)


def _api_client(kubeconfig: Any) -> Any:
    from gpufleet import kube

    return kube.new_client(kubeconfig)
