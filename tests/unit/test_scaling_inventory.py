"""Free GPUs per generation from Node and Pod objects (the KWOK nodes the dev cluster
renders, and hand-written ones): allocatable less scheduled pods' requests, per node."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.devcluster import fleet
from gpufleet.scaling import inventory


def _node(group: str, gpu: str, gpus: int, index: int = 0, **extra: Any) -> inventory.Node:
    body: Any = fleet.render_node(
        fleet.NodeGroup(name=group, count=1, gpu=gpu, gpusPerNode=gpus), index
    )
    for key, value in extra.items():
        body.setdefault(key, {}).update(value)
    node: inventory.Node = body
    return node


def _pod(node: str, gpus: int | None, *, phase: str = "Running", limits: bool = False,
         init: int | None = None) -> inventory.Pod:  # fmt: skip
    resources: inventory.Resources = {}
    if gpus is not None:
        resources["limits" if limits else "requests"] = {"nvidia.com/gpu": str(gpus)}
    pod: inventory.Pod = {
        "metadata": {"name": f"p-{node}-{gpus}"},
        "spec": {"containers": [{"name": "c", "resources": resources}], "nodeName": node},
        "status": {"phase": phase},
    }
    if init is not None:
        pod["spec"]["initContainers"] = [
            {"name": "i", "resources": {"requests": {"nvidia.com/gpu": str(init)}}}
        ]
    return pod


H100_A = "kwok-h100-0"
H100_B = "kwok-h100-1"


@pytest.mark.parametrize(
    ("pods", "free"),
    [
        ([], (8, 8)),
        ([_pod(H100_A, 2)], (6, 8)),
        ([_pod(H100_A, 2), _pod(H100_A, 4), _pod(H100_B, 8)], (0, 2)),
        ([_pod(H100_A, 4, limits=True)], (4, 8)),  # the request defaults to the limit
        ([_pod(H100_A, 4, phase="Succeeded"), _pod(H100_B, 1, phase="Failed")], (8, 8)),
        ([_pod(H100_A, 1, init=3)], (5, 8)),  # the largest init container counts
        ([_pod(H100_A, None)], (8, 8)),  # a CPU-only pod
        ([_pod("kwok-elsewhere-0", 8)], (8, 8)),
    ],
)
def test_free_gpus_per_node(pods: list[inventory.Pod], free: tuple[int, ...]) -> None:
    nodes = [_node("h100", "H100-80GB", 8, 0), _node("h100", "H100-80GB", 8, 1)]
    found = inventory.inventory(nodes, pods)
    assert set(found) == {"H100-80GB"}
    assert found["H100-80GB"].free_per_node == free
    assert found["H100-80GB"].free_gpus == sum(free)


def test_generations_are_identified_by_their_labels() -> None:
    nodes = [
        _node("a100", "A100-80GB", 4),
        _node("h100", "H100-80GB", 8),
        _node("l4", "L4", 1),
        {"metadata": {"name": "cpu", "labels": {}}, "status": {"allocatable": {"cpu": "8"}}},
    ]
    found = inventory.inventory(nodes, [])
    assert {gpu: (g.gpus_per_node, g.free_gpus) for gpu, g in found.items()} == {
        "A100-80GB": (4, 4),
        "H100-80GB": (8, 8),
        "L4": (1, 1),
    }


@pytest.mark.parametrize(
    ("extra", "counted"),
    [
        ({}, True),
        ({"spec": {"unschedulable": True}}, False),
        ({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, False),
        ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, True),
    ],
)
def test_only_schedulable_nodes_count(extra: dict[str, Any], counted: bool) -> None:
    found = inventory.inventory([_node("h100", "H100-80GB", 8, **extra)], [])
    assert ("H100-80GB" in found) is counted


def test_count_label_when_allocatable_lacks_gpus() -> None:
    node = _node("a100", "A100-80GB", 4)
    del node["status"]["allocatable"]["nvidia.com/gpu"]
    assert inventory.inventory([node], [])["A100-80GB"].free_per_node == (4,)


@pytest.mark.parametrize(
    ("free", "tp", "slots", "why"),
    [
        ((4, 4), 4, 2, ""),
        ((3, 1), 2, 1, ""),
        ((1, 1, 1, 1), 2, 0, ""),  # four free GPUs, but on four nodes
        ((4,), 8, 0, "needs 8 GPUs on one node; A100-80GB nodes have at most 4"),
    ],
)
def test_slots_and_node_shape(free: tuple[int, ...], tp: int, slots: int, why: str) -> None:
    generation = inventory.Generation(gpu="A100-80GB", free_per_node=free, gpus_per_node=4)
    assert generation.slots(tp) == slots
    assert generation.fits(tp) == why


@pytest.mark.parametrize(
    ("free", "tp", "taken", "after"),
    [
        ([8, 2, 4], 2, True, [8, 0, 4]),  # the fullest node that fits: big holes stay
        ([8, 2, 4], 4, True, [8, 2, 0]),
        ([1, 1], 2, False, [1, 1]),
    ],
)
def test_take_is_best_fit(free: list[int], tp: int, taken: bool, after: list[int]) -> None:
    assert inventory.take(free, tp) is taken
    assert free == after
