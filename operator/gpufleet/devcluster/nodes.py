"""Registering the fleet's KWOK nodes with the API server and waiting until they are usable.

A node is created with its labels, taints, capacity and allocatable in one request; a
few requests run at once, so a fleet of thousands is not registered one round trip
after another. KWOK then marks each node Ready and renews its Lease, and the node
lifecycle controller takes off the start-up taint; the wait follows that with one list
and then a watch rather than re-listing the whole fleet. An existing node of the same
name is left as it is (idempotent). Responses are read as raw JSON, not turned into
the client's model objects: for a list of 5,000 nodes that is 0.3 s of CPU here
instead of 1.5 s.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufleet import kube
from gpufleet.devcluster import errors, fleet, readiness

Progress = Callable[[str], None]
_REQUEST_TIMEOUT_S = 30.0
_WATCH_SECONDS = 5  # the server ends each watch after this; progress is said between
_PROGRESS_EVERY_S = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Rollout:
    """Seconds from the first create until every node was created, Ready, schedulable."""

    count: int
    created_s: float
    ready_s: float
    schedulable_s: float


def api_client(kubeconfig: Path) -> client.ApiClient:
    return kube.new_client(kubeconfig)


def _raw(response: object) -> urllib3.BaseHTTPResponse:
    """What a call made with ``_preload_content=False`` returns (the stubs say otherwise)."""
    return cast(urllib3.BaseHTTPResponse, response)


def _create(core: client.CoreV1Api, body: fleet.NodeBody) -> None:
    """Create the node with its status in one request; an existing node is success.

    The API server keeps a Node's status on create (kubelets register that way), and
    one request leaves no window in which KWOK could see the node without capacity
    and write that back over a later status patch.
    """
    try:
        response = _raw(
            core.create_node(
                body,  # type: ignore[arg-type]
                _preload_content=False,
                _request_timeout=_REQUEST_TIMEOUT_S,
            )
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
        return
    response.data  # noqa: B018 - read to the end, so the connection can be reused
    response.release_conn()


def create(core: client.CoreV1Api, body: fleet.NodeBody) -> None:
    """Register one KWOK node (see ``_create``); tests use it to grow a fleet."""
    _create(core, body)


def _failed(body: fleet.NodeBody, exc: BaseException) -> errors.StartFailed:
    name = body["metadata"]["name"]
    if isinstance(exc, ApiException):
        return errors.StartFailed(f"creating node {name}: HTTP {exc.status} {exc.reason}")
    return errors.StartFailed(f"creating node {name}: {exc}")


def create_all(
    core: client.CoreV1Api,
    bodies: Sequence[fleet.NodeBody],
    *,
    deadline: readiness.Deadline,
    progress: Progress,
) -> None:
    """Create every node, a few requests at a time; ``StartFailed`` on the first failure."""
    pacer = readiness.Pacer(_PROGRESS_EVERY_S, last=time.monotonic())
    workers = readiness.create_workers(len(bodies))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="node-create") as pool:
        futures = {pool.submit(_create, core, body): body for body in bodies}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
                if (exc := future.exception()) is not None:
                    raise _failed(futures[future], exc) from exc
                if deadline.left(time.monotonic()) < 0:
                    raise errors.StartFailed(
                        f"only {done}/{len(bodies)} KWOK nodes created in {deadline.seconds:.0f}s"
                    )
                if pacer.due(time.monotonic()):
                    progress(f"  created {done}/{len(bodies)} nodes")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _list(core: client.CoreV1Api) -> tuple[list[readiness.RawNode], str]:
    """Every node as raw JSON, and the resourceVersion to watch from."""
    response = _raw(core.list_node(_preload_content=False, _request_timeout=_REQUEST_TIMEOUT_S))
    doc = json.loads(response.data)
    return doc.get("items") or [], str(doc["metadata"]["resourceVersion"])


def _events(
    core: client.CoreV1Api, since: str, seconds: int
) -> Generator[readiness.RawEvent, None, None]:
    """Watch events on nodes after resourceVersion ``since``, for at most ``seconds``."""
    response = _raw(
        core.list_node(
            watch=True,
            resource_version=since,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _preload_content=False,
            _request_timeout=seconds + _REQUEST_TIMEOUT_S,
        )
    )
    try:
        for line in response:
            if line.strip():
                yield json.loads(line)
    finally:
        response.close()
        response.release_conn()


def _follow(
    core: client.CoreV1Api,
    tally: readiness.Tally,
    since: str,
    *,
    seconds: int,
    until: Callable[[], bool],
) -> str:
    """Apply one watch's events to ``tally`` until it ends or ``until()`` holds; returns
    the resourceVersion to resume from (``readiness.Expired`` when there is none)."""
    with contextlib.closing(_events(core, since, seconds)) as events:
        for event in events:
            since = readiness.apply(tally, event, since)
            if until():
                break
    return since


def wait_schedulable(
    core: client.CoreV1Api,
    wanted: set[str],
    *,
    deadline: readiness.Deadline,
    progress: Progress,
) -> float:
    """Return once every node in ``wanted`` is Ready and without start-up taints.

    Returns the ``time.monotonic()`` at which every node was first seen Ready (some
    perhaps still tainted). ``StartFailed`` names the nodes still missing at
    ``deadline``.
    """
    tally = readiness.Tally(frozenset(wanted))
    pacer = readiness.Pacer(_PROGRESS_EVERY_S, last=time.monotonic())
    items, since = _list(core)
    tally.reset(items)
    ready_at: float | None = None

    def milestone() -> bool:
        return tally.done or (ready_at is None and tally.counts().ready == len(wanted))

    while True:
        now = time.monotonic()
        if ready_at is None and tally.counts().ready == len(wanted):
            ready_at = now
        if tally.done:
            return ready_at if ready_at is not None else now
        if (left := deadline.left(now)) <= 0:
            raise errors.StartFailed(
                f"KWOK nodes not schedulable after {deadline.seconds:.0f}s "
                f"({tally.counts().line()}): {tally.missing()}"
            )
        if pacer.due(now):
            progress(f"  {tally.counts().line()}")
        seconds = max(1, min(_WATCH_SECONDS, int(left)))
        try:
            since = _follow(core, tally, since, seconds=seconds, until=milestone)
        except readiness.Expired:
            items, since = _list(core)
            tally.reset(items)


def rollout(kubeconfig: Path, bodies: Sequence[fleet.NodeBody], *, progress: Progress) -> Rollout:
    """Create every node in ``bodies`` and wait until all are schedulable.

    The whole of it must finish within ``readiness.ready_timeout(len(bodies))``.
    """
    start = time.monotonic()
    deadline = readiness.Deadline.for_fleet(len(bodies), now=start)
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        create_all(core, bodies, deadline=deadline, progress=progress)
        created = time.monotonic() - start
        progress(f"  created {len(bodies)} nodes in {created:.1f}s")
        wanted = {b["metadata"]["name"] for b in bodies}
        ready = wait_schedulable(core, wanted, deadline=deadline, progress=progress) - start
    done = time.monotonic() - start
    progress(f"  {len(bodies)} nodes Ready at {ready:.1f}s, schedulable at {done:.1f}s")
    return Rollout(len(bodies), created_s=created, ready_s=ready, schedulable_s=done)


def register(kubeconfig: Path, bodies: Sequence[fleet.NodeBody], *, progress: Progress) -> int:
    """Create every node in ``bodies`` and wait until all are usable; returns the count."""
    return rollout(kubeconfig, bodies, progress=progress).count
