"""The operator's reads of routers (table-driven, against in-process servers): which pods
it polls (their controller chain, never their labels), and that a router answering with
too much, or with JSON it cannot decode, is that router's problem alone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gpufleet import labels as contract
from gpufleet.api.resources import RoutingPolicy
from gpufleet.api.routingpolicy import RoutingPolicyStatus
from gpufleet.controller import observe, ownership, runtime
from gpufleet.controller.autoscaling import scalinginputs
from gpufleet.controller.routingpolicy import routerstats
from gpufleet.controller.workqueue import Key

POLICY_UID, DEPLOY_UID, RS_UID = "policy-uid", "deploy-uid", "rs-uid"
KEY: Key = ("ns", "p")


def _pod(name: str, controller: str, ip: str = "127.0.0.1") -> observe.ObservedPod:
    return observe.ObservedPod(
        name=name, variant="", node="n", phase="Running", ready=True, ip=ip, controller=controller
    )


def _child(kind: str, name: str, uid: str, controller: str) -> observe.ObservedChild:
    return observe.ObservedChild(
        kind=kind, namespace="ns", name=name, uid=uid, owner="p", spec_hash="", body={},
        controller=controller,
    )  # fmt: skip


DEPLOYMENT = _child("Deployment", "p-router", DEPLOY_UID, POLICY_UID)
REPLICA_SET = _child("ReplicaSet", "p-router-abc", RS_UID, DEPLOY_UID)
ROUTER = _pod("p-router-abc-1", RS_UID)
LOOKALIKE = _pod("p-router-evil", "")  # the router labels, made by hand
ADOPTED = _pod("p-router-stray", "other-rs")  # another ReplicaSet's pod, same labels
FORGED_RS = _child("ReplicaSet", "p-router-forged", "forged-rs", "")


@pytest.mark.parametrize(
    ("owner", "deployment", "sets", "pods", "expected"),
    [
        (POLICY_UID, DEPLOYMENT, [REPLICA_SET], [ROUTER, LOOKALIKE, ADOPTED], [ROUTER]),
        (POLICY_UID, None, [REPLICA_SET], [ROUTER], []),  # no Deployment yet
        ("someone-else", DEPLOYMENT, [REPLICA_SET], [ROUTER], []),  # not the policy's
        ("", DEPLOYMENT, [REPLICA_SET], [ROUTER], []),
        (POLICY_UID, DEPLOYMENT, [FORGED_RS], [_pod("x", "forged-rs")], []),
        (POLICY_UID, DEPLOYMENT, [], [ROUTER], []),  # its ReplicaSet not seen yet
    ],
)
def test_routers_are_the_pods_of_the_policys_own_deployment(
    owner: str,
    deployment: observe.ObservedChild | None,
    sets: list[observe.ObservedChild],
    pods: list[observe.ObservedPod],
    expected: list[observe.ObservedPod],
) -> None:
    assert ownership.controlled_pods(owner, deployment, sets, pods) == expected


def _meta(refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "x", "namespace": "ns", "ownerReferences": refs}}


@pytest.mark.parametrize(
    ("refs", "uid"),
    [
        ([{"kind": "ReplicaSet", "uid": "a", "controller": True}], "a"),
        ([{"kind": "ReplicaSet", "uid": "a", "controller": False}], ""),
        ([{"kind": "X", "uid": "a"}, {"kind": "ReplicaSet", "uid": "b", "controller": True}], "b"),
        ([], ""),
    ],
)
def test_projections_read_the_controller_reference(refs: list[dict[str, Any]], uid: str) -> None:
    assert observe.pod(_meta(refs)).controller == uid
    assert observe.child(_meta(refs)).controller == uid


def test_the_policy_cache_answers_by_owner() -> None:
    kind = runtime.Kind(name="RoutingPolicy", plural="routingpolicies",
                        owner_label=contract.ROUTING_POLICY, model=RoutingPolicy,
                        status_model=RoutingPolicyStatus,
                        reconcile=None)  # type: ignore[arg-type]  # fmt: skip
    state = runtime.KindState(
        kind=kind,
        child_indexes=({KEY: [DEPLOYMENT]},),
        pod_index={KEY: [ROUTER, LOOKALIKE]},
        replica_set_index={KEY: [REPLICA_SET]},
    )
    state.event("ADDED", {"metadata": {"name": "p", "namespace": "ns", "uid": POLICY_UID}})
    assert state.owned_pods(KEY, "p-router") == [ROUTER]
    assert state.pods(KEY) == [ROUTER, LOOKALIKE]  # what labels alone would have polled


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ONE_MIB = 1 << 20  # the cap the operator reads up to
GOOD = b'{"demand": {"m": {"queued": 3, "held": 1}}}'


def _answer(body: bytes, status: int = 200, **headers: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, headers=headers)

    return handle


async def _streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
    await response.prepare(request)
    for _ in range(64):
        await response.write(b"[" * 65536)
    return response


BEHAVIOURS: dict[str, Handler] = {
    "good": _answer(GOOD),
    "declared-too-big": _answer(b" " * (ONE_MIB + 1)),
    "streamed-too-big": _streamed,
    "deeply-nested": _answer(b"[" * 200_000 + b"]" * 200_000),
    "not-utf8": _answer(b'{"a": "\xff"}'),
    "not-json": _answer(b"<html>"),
    "redirect": _answer(b"", 302, Location="http://169.254.169.254/stats"),
}


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, TestServer]]:
    out: dict[str, TestServer] = {}
    for name, handler in BEHAVIOURS.items():
        app = web.Application()
        app.router.add_get("/stats", handler)
        out[name] = TestServer(app, host="127.0.0.1")
        await out[name].start_server()
    yield out
    for server in out.values():
        await server.close()


async def _ask(server: TestServer, name: str) -> tuple[object, str]:
    poller = routerstats.Poller(timeout=10)
    try:
        pod = _pod(name, RS_UID)
        (body,) = await poller.bodies([pod], port=server.port or 0)
        (reason,) = await poller.poll([pod], port=server.port or 0)
    finally:
        await poller.close()
    return body, str(reason)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("declared-too-big", "over the 1048576"),
        ("streamed-too-big", "over the 1048576"),
        ("deeply-nested", "not JSON (RecursionError)"),
        ("not-utf8", "not JSON (UnicodeDecodeError)"),
        ("not-json", "not JSON (JSONDecodeError)"),
        ("redirect", "answered 302"),
    ],
)
async def test_a_bad_stats_answer_is_that_routers_reason(
    servers: dict[str, TestServer], name: str, fragment: str
) -> None:
    body, reason = await _ask(servers[name], name)
    assert body is None
    assert reason.startswith(f"router {name}: GET /stats ") and fragment in reason


async def test_one_bad_router_leaves_the_others_demand(servers: dict[str, TestServer]) -> None:
    poller = routerstats.Poller(timeout=10)
    try:
        answers: list[object] = []
        for name in ("deeply-nested", "streamed-too-big", "good"):
            answers += await poller.bodies([_pod(name, RS_UID)], port=servers[name].port or 0)
    finally:
        await poller.close()
    assert answers[:2] == [None, None]
    assert scalinginputs.demand(answers, "m") == scalinginputs.model.Demand(queued=3, held=1)


@pytest.mark.parametrize(
    ("queued", "expected"), [(3, 3), (2.5, 2), (float("inf"), 0), (float("nan"), 0), (-1, 0)]
)
def test_demand_counts_only_finite_positive_numbers(queued: float, expected: int) -> None:
    body = {"demand": {"m": {"queued": queued, "held": 0}}}
    assert scalinginputs.demand([body], "m").queued == expected
