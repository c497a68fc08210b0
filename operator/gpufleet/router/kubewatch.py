"""One list-then-watch of one kind of Kubernetes object, in a worker thread.

The Kubernetes client is synchronous, so each ``Watch`` runs its own daemon thread: it
lists the objects (``Reset`` with all of them, in ``to_dict()`` form, snake_case keys),
then watches from the list's resourceVersion and hands every change over (``Upsert``,
``Delete``). When the server ends a watch (its ``timeoutSeconds``) the thread watches
again from the last version seen; when that version has expired (410 Gone) it lists
again. Errors (the API server restarting, RBAC) are logged and retried after a pause
that doubles up to ``MAX_BACKOFF_S``. Events reach the event loop through
``loop.call_soon_threadsafe``; nothing here touches the router's state.

``stop`` is cooperative: the thread ends at its next event or at the server's timeout,
and whoever receives events ignores those of a stopped watch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

log = logging.getLogger("gpufleet.router.kubewatch")

Resource = Literal["pods", "endpointslices", "configmaps", "secrets", "modelpools"]
Raw = dict[str, Any]
WATCH_TIMEOUT_S = 60
MAX_BACKOFF_S = 8.0


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """What one watch lists: a kind in a namespace, narrowed by selectors. Secrets and
    the ConfigMap are watched by name (``field_selector="metadata.name=X"``), which a
    Role restricted with ``resourceNames`` allows."""

    resource: Resource
    namespace: str
    label_selector: str = ""
    field_selector: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Reset:
    """The full current set (after a list): name -> object."""

    items: dict[str, Raw]


@dataclasses.dataclass(frozen=True, slots=True)
class Upsert:
    name: str
    item: Raw


@dataclasses.dataclass(frozen=True, slots=True)
class Delete:
    name: str


Event = Reset | Upsert | Delete
Deliver = Callable[["Watch", Event], None]


class Watch:
    def __init__(
        self, api: Any, spec: Spec, deliver: Deliver, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.spec = spec
        self._api, self._deliver, self._loop = api, deliver, loop
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{spec.resource}", daemon=True
        )

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _send(self, event: Event) -> None:
        if not self.stopped:
            self._loop.call_soon_threadsafe(self._deliver, self, event)

    def _run(self) -> None:
        backoff = 0.5
        while not self.stopped:
            try:
                version: str | None = self._list()
                backoff = 0.5
                while not self.stopped and version is not None:
                    version = self._watch(version)
            except Exception as exc:  # the API server may be restarting; retry
                if self.stopped or self._loop.is_closed():
                    return
                log.warning("watching %s failed: %s", self.spec.resource, _describe(exc))
                time.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)

    def _list(self) -> str:
        listing = _list_function(self._api, self.spec)(**self._query())
        items = [_as_dict(i) for i in _items(listing)]
        self._send(Reset({_name(i): i for i in items}))
        meta = _metadata(listing)
        return str(meta.get("resource_version") or meta.get("resourceVersion"))

    def _watch(self, version: str) -> str | None:
        """Stream changes from ``version``; the last version seen, or None to relist."""
        from kubernetes import client, watch

        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                _list_function(self._api, self.spec),
                **self._query(),
                resource_version=version,
                timeout_seconds=WATCH_TIMEOUT_S,
                allow_watch_bookmarks=True,
            ):
                if self.stopped:
                    stream.stop()  # type: ignore[no-untyped-call]
                    break
                version = self._forward(event) or version
        except client.ApiException as exc:
            if exc.status == 410:
                return None
            raise
        return version

    def _forward(self, event: dict[str, Any]) -> str | None:
        kind, item = event["type"], _as_dict(event["object"])
        if kind in ("ADDED", "MODIFIED"):
            self._send(Upsert(_name(item), item))
        elif kind == "DELETED":
            self._send(Delete(_name(item)))
        meta = item.get("metadata") or {}
        return meta.get("resource_version") or meta.get("resourceVersion")

    def _query(self) -> dict[str, Any]:
        query: dict[str, Any] = {"namespace": self.spec.namespace}
        if self.spec.label_selector:
            query["label_selector"] = self.spec.label_selector
        if self.spec.field_selector:
            query["field_selector"] = self.spec.field_selector
        return query


def _list_function(api: Any, spec: Spec) -> Callable[..., Any]:
    from functools import partial

    from kubernetes import client

    if spec.resource == "pods":
        return client.CoreV1Api(api).list_namespaced_pod
    if spec.resource == "configmaps":
        return client.CoreV1Api(api).list_namespaced_config_map
    if spec.resource == "secrets":
        return client.CoreV1Api(api).list_namespaced_secret
    if spec.resource == "endpointslices":
        return client.DiscoveryV1Api(api).list_namespaced_endpoint_slice
    custom = client.CustomObjectsApi(api).list_namespaced_custom_object
    return partial(custom, "gpufleet.io", "v1alpha1", plural="modelpools")


def _as_dict(item: Any) -> Raw:
    return item if isinstance(item, dict) else dict(item.to_dict())


def _items(listing: Any) -> list[Any]:
    return list(listing["items"] if isinstance(listing, dict) else listing.items)


def _metadata(listing: Any) -> dict[str, Any]:
    if isinstance(listing, dict):
        return dict(listing.get("metadata") or {})
    return dict(listing.metadata.to_dict())


def _name(item: Raw) -> str:
    return str((item.get("metadata") or {}).get("name", ""))


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__} {status}" if status else type(exc).__name__
