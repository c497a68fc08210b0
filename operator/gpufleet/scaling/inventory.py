"""Free GPUs per generation, from Node and Pod objects. Pure.

A node counts when it is schedulable (not cordoned, Ready when it reports conditions)
and its GPU Feature Discovery labels identify a catalog generation
(``hardware.catalog.identify``: product and memory). Its GPUs are its allocatable
``nvidia.com/gpu`` (the ``nvidia.com/gpu.count`` label when allocatable lacks it), less
what the pods bound to it request: a container's ``nvidia.com/gpu`` request, or its
limit (for an extended resource the request defaults to the limit), summed over the
containers, or the largest init container's when that is more; pods that have
finished (Succeeded, Failed) hold nothing. A replica with tensor parallelism ``k``
needs ``k`` free GPUs on one node, so what is free is kept per node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import NotRequired, TypedDict

from gpufleet.hardware import catalog

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


class ObjectMeta(TypedDict):
    name: str
    labels: NotRequired[dict[str, str]]


class NodeCondition(TypedDict):
    type: str
    status: str


class NodeSpec(TypedDict, total=False):
    unschedulable: bool


class NodeStatus(TypedDict, total=False):
    allocatable: dict[str, str]
    conditions: list[NodeCondition]


class Node(TypedDict):
    """The fields of a Node object read here."""

    metadata: ObjectMeta
    spec: NotRequired[NodeSpec]
    status: NotRequired[NodeStatus]


class Resources(TypedDict, total=False):
    requests: dict[str, str]
    limits: dict[str, str]


class Container(TypedDict):
    name: str
    resources: NotRequired[Resources]


class PodSpec(TypedDict):
    containers: list[Container]
    initContainers: NotRequired[list[Container]]
    nodeName: NotRequired[str]


class PodStatus(TypedDict, total=False):
    phase: str


class Pod(TypedDict):
    """The fields of a Pod object read here."""

    metadata: ObjectMeta
    spec: PodSpec
    status: NotRequired[PodStatus]


@dataclasses.dataclass(frozen=True, slots=True)
class Generation:
    """The schedulable nodes of one GPU generation: free GPUs on each, and node shape."""

    gpu: str
    free_per_node: tuple[int, ...]
    gpus_per_node: int

    @property
    def free_gpus(self) -> int:
        return sum(self.free_per_node)

    def slots(self, tensor_parallel_size: int) -> int:
        """How many replicas needing ``tensor_parallel_size`` GPUs on one node fit now."""
        return sum(free // tensor_parallel_size for free in self.free_per_node)

    def fits(self, tensor_parallel_size: int) -> str:
        """Why a replica of that size can never run on these nodes; "" when it can."""
        if tensor_parallel_size > self.gpus_per_node:
            return (
                f"needs {tensor_parallel_size} GPUs on one node; {self.gpu} nodes have "
                f"at most {self.gpus_per_node}"
            )
        return ""


Inventory = Mapping[str, Generation]


def _quantity(value: str | None) -> int:
    """A GPU count ("4"); anything else (absent, fractional, malformed) is 0."""
    return int(value) if value is not None and value.isdigit() else 0


def node_gpus(node: Node) -> int:
    """GPUs the node offers: allocatable ``nvidia.com/gpu``, else the GFD count label."""
    allocatable = node.get("status", {}).get("allocatable", {})
    if catalog.GPU_RESOURCE in allocatable:
        return _quantity(allocatable[catalog.GPU_RESOURCE])
    return _quantity(node["metadata"].get("labels", {}).get(catalog.COUNT_LABEL))


def schedulable(node: Node) -> bool:
    """Not cordoned, and Ready when the node reports a Ready condition."""
    if node.get("spec", {}).get("unschedulable", False):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    ready = [c["status"] for c in conditions if c["type"] == "Ready"]
    return not ready or ready[0] == "True"


def _container_gpus(container: Container) -> int:
    resources = container.get("resources", {})
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    return _quantity(requests.get(catalog.GPU_RESOURCE, limits.get(catalog.GPU_RESOURCE)))


def pod_gpus(pod: Pod) -> int:
    """GPUs a pod holds on its node (0 once it finished)."""
    if pod.get("status", {}).get("phase") in FINISHED_PHASES:
        return 0
    main = sum(_container_gpus(c) for c in pod["spec"]["containers"])
    init = max((_container_gpus(c) for c in pod["spec"].get("initContainers", [])), default=0)
    return max(main, init)


def used_per_node(pods: Iterable[Pod]) -> dict[str, int]:
    """GPUs held on each node by the pods bound to it."""
    used: dict[str, int] = {}
    for pod in pods:
        node = pod["spec"].get("nodeName")
        if node:
            used[node] = used.get(node, 0) + pod_gpus(pod)
    return used


def inventory(
    nodes: Iterable[Node],
    pods: Iterable[Pod],
    *,
    gpus: Mapping[str, catalog.GpuSpec] = catalog.GPUS,
) -> dict[str, Generation]:
    """Free GPUs per generation and node, over the schedulable GPU nodes."""
    used = used_per_node(pods)
    free: dict[str, list[int]] = {}
    shape: dict[str, int] = {}
    for node in nodes:
        spec = catalog.identify(node["metadata"].get("labels", {}), gpus)
        if spec is None or not schedulable(node):
            continue
        total = node_gpus(node)
        free.setdefault(spec.name, []).append(max(0, total - used.get(node["metadata"]["name"], 0)))
        shape[spec.name] = max(shape.get(spec.name, 0), total)
    return {
        gpu: Generation(gpu=gpu, free_per_node=tuple(sorted(f)), gpus_per_node=shape[gpu])
        for gpu, f in free.items()
    }


def take(free_per_node: list[int], tensor_parallel_size: int) -> bool:
    """Reserve one replica's GPUs on the fullest node that still fits it (best fit, so
    large holes stay for large replicas); False when none fits. Mutates the list."""
    fitting = [i for i, f in enumerate(free_per_node) if f >= tensor_parallel_size]
    if not fitting:
        return False
    best = min(fitting, key=lambda i: free_per_node[i])
    free_per_node[best] -= tensor_parallel_size
    return True
