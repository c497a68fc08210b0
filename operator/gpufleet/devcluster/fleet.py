"""The simulated GPU fleet: a fleet file (YAML) and the KWOK Node objects it describes.

Pure: parsing and validation of the fleet file and rendering of Node bodies. A node
group is ``count`` identical nodes; a group with ``gpu`` set carries what NVIDIA GPU
Feature Discovery would label on such a node, allocatable ``nvidia.com/gpu`` and the
``nvidia.com/gpu=present:NoSchedule`` taint; a group without ``gpu`` is a CPU-only node.
Errors name the offending entry and list accepted values.
"""

from __future__ import annotations

import importlib.resources
from typing import Literal, NotRequired, TypedDict

import pydantic
import yaml

from gpufleet.devcluster import errors
from gpufleet.hardware import catalog

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
FLEET_LABEL = "gpufleet.io/dev-cluster-group"
GPU_TAINT_KEY = catalog.GPU_RESOURCE


class Taint(pydantic.BaseModel):
    """A node taint."""

    model_config = pydantic.ConfigDict(extra="forbid")

    key: str = pydantic.Field(min_length=1, max_length=253)
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class NodeGroup(pydantic.BaseModel):
    """``count`` identical nodes."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    name: str = pydantic.Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    count: int = pydantic.Field(ge=1, le=1000)
    gpu: str | None = None
    gpus_per_node: int = pydantic.Field(default=8, alias="gpusPerNode", ge=1, le=16)
    cpu: str = "96"
    memory: str = "1024Gi"
    pods: int = pydantic.Field(default=110, ge=1)
    labels: dict[str, str] = {}
    taints: list[Taint] = []

    @pydantic.field_validator("gpu")
    @classmethod
    def _known_gpu(cls, value: str | None) -> str | None:
        if value is not None and value not in catalog.GPUS:
            raise ValueError(
                f"unknown GPU generation {value!r}; accepted: {', '.join(catalog.GPUS)}"
            )
        return value


class Fleet(pydantic.BaseModel):
    """A fleet file."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    node_groups: list[NodeGroup] = pydantic.Field(alias="nodeGroups", min_length=1)

    @pydantic.model_validator(mode="after")
    def _unique_names(self) -> Fleet:
        names = [g.name for g in self.node_groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"node group names must be unique; repeated: {', '.join(dupes)}")
        return self

    @property
    def node_count(self) -> int:
        return sum(g.count for g in self.node_groups)


class NodeTaint(TypedDict):
    key: str
    value: str
    effect: str


class NodeMetadata(TypedDict):
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]


class NodeSpec(TypedDict):
    taints: NotRequired[list[NodeTaint]]


class NodeStatus(TypedDict):
    capacity: dict[str, str]
    allocatable: dict[str, str]


class NodeBody(TypedDict):
    apiVersion: str
    kind: str
    metadata: NodeMetadata
    spec: NodeSpec
    status: NodeStatus


def parse(text: str, *, source: str = "fleet file") -> Fleet:
    """Parse and validate a fleet file; raise ``FleetError`` naming the entry at fault."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise errors.FleetError(f"{source}: not valid YAML: {detail}") from exc
    try:
        return Fleet.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = _describe_location(raw, first["loc"])
        raise errors.FleetError(f"{source}: {where}: {first['msg']}") from exc


def _describe_location(raw: object, loc: tuple[int | str, ...]) -> str:
    """``nodeGroups[2] (h100).gpu`` — the path, with the group's name when it has one."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                parts[-1] += f" ({node['name']})"
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "top level"


def load(path: str | None) -> Fleet:
    """The fleet in ``path``, or the built-in default when ``path`` is None."""
    if path is None:
        text = (
            importlib.resources.files("gpufleet.devcluster")
            .joinpath("data/default-fleet.yaml")
            .read_text()
        )
        return parse(text, source="default fleet")
    try:
        with open(path, encoding="utf-8") as handle:  # noqa: PTH123
            text = handle.read()
    except OSError as exc:
        raise errors.FleetError(f"cannot read fleet file {path}: {exc.strerror}") from exc
    return parse(text, source=path)


def _gpu_labels(gpu: catalog.GpuSpec, count: int) -> dict[str, str]:
    return {
        catalog.PRODUCT_LABEL: gpu.primary_product,
        catalog.MEMORY_LABEL: str(gpu.memory_mib),
        catalog.COUNT_LABEL: str(count),
        catalog.FAMILY_LABEL: gpu.family,
        "nvidia.com/gpu.present": "true",
    }


def render_node(group: NodeGroup, index: int) -> NodeBody:
    """The Node object for node ``index`` of ``group`` (KWOK-managed)."""
    name = f"kwok-{group.name}-{index}"
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        # A kubelet registers the deprecated beta labels as well; a node without them
        # costs one more PATCH, from the node lifecycle controller adding them.
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "type": "kwok",
        FLEET_LABEL: group.name,
    }
    capacity = {"cpu": group.cpu, "memory": group.memory, "pods": str(group.pods)}
    taints = [NodeTaint(key=t.key, value=t.value, effect=t.effect) for t in group.taints]
    if group.gpu is not None:
        labels |= _gpu_labels(catalog.get(group.gpu), group.gpus_per_node)
        capacity[catalog.GPU_RESOURCE] = str(group.gpus_per_node)
        taints.append(NodeTaint(key=GPU_TAINT_KEY, value="present", effect="NoSchedule"))
    labels |= group.labels
    spec: NodeSpec = {"taints": taints} if taints else {}
    return NodeBody(
        apiVersion="v1",
        kind="Node",
        metadata=NodeMetadata(
            name=name,
            labels=labels,
            annotations={KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        ),
        spec=spec,
        status=NodeStatus(capacity=dict(capacity), allocatable=dict(capacity)),
    )


def render_nodes(fleet: Fleet) -> list[NodeBody]:
    """Every Node of the fleet, in file order."""
    return [render_node(g, i) for g in fleet.node_groups for i in range(g.count)]
