"""The fleet file: parsing, errors that name the entry, and the Node bodies rendered."""

from __future__ import annotations

import pytest

from gpufleet.devcluster import errors, fleet
from gpufleet.hardware import catalog


def test_default_fleet_has_the_generations_the_tests_need() -> None:
    default = fleet.load(None)
    gpus = {g.gpu: g.gpus_per_node for g in default.node_groups if g.gpu}
    for name in ("B200", "H100-80GB", "A100-80GB", "A100-40GB"):
        assert gpus[name] == 8
    assert gpus["L40S"] == 4
    assert any(g.gpu is None for g in default.node_groups), "needs CPU-only nodes"


def test_gpu_node_carries_gfd_labels_allocatable_and_taint() -> None:
    group = fleet.NodeGroup(name="h100", count=1, gpu="H100-80GB", gpusPerNode=8)
    node = fleet.render_node(group, 0)
    labels = node["metadata"]["labels"]
    assert labels[catalog.PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3"
    assert labels[catalog.MEMORY_LABEL] == "81559"
    assert labels[catalog.COUNT_LABEL] == "8"
    assert labels[catalog.FAMILY_LABEL] == "hopper"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    assert node["metadata"]["annotations"][fleet.KWOK_ANNOTATION] == "fake"
    assert catalog.identify(labels) == catalog.get("H100-80GB")


def test_cpu_node_has_no_gpu_and_no_taint() -> None:
    node = fleet.render_node(fleet.NodeGroup(name="cpu", count=1), 0)
    assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    assert "taints" not in node["spec"]
    assert catalog.PRODUCT_LABEL not in node["metadata"]["labels"]


def test_node_carries_the_labels_a_kubelet_registers_with() -> None:
    """Both the stable and the deprecated beta os/arch labels: without the beta ones the
    node lifecycle controller patches every new node to add them."""
    labels = fleet.render_node(fleet.NodeGroup(name="cpu", count=1), 0)["metadata"]["labels"]
    for key in ("os", "arch"):
        assert labels[f"beta.kubernetes.io/{key}"] == labels[f"kubernetes.io/{key}"]


def test_extra_labels_and_taints_are_kept() -> None:
    group = fleet.NodeGroup.model_validate(
        {
            "name": "spot",
            "count": 2,
            "gpu": "L40S",
            "gpusPerNode": 4,
            "labels": {"pool": "spot"},
            "taints": [{"key": "spot", "value": "true", "effect": "NoExecute"}],
        }
    )
    nodes = fleet.render_nodes(fleet.Fleet(nodeGroups=[group]))
    assert [n["metadata"]["name"] for n in nodes] == ["kwok-spot-0", "kwok-spot-1"]
    assert nodes[1]["metadata"]["labels"]["pool"] == "spot"
    assert {t["key"] for t in nodes[1]["spec"]["taints"]} == {"spot", "nvidia.com/gpu"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "nodeGroups:\n- {name: a, count: 1, gpu: H100}\n",
            "nodeGroups[0] (a).gpu: Value error, unknown GPU generation 'H100'; accepted: A10G",
        ),
        ("nodeGroups:\n- {name: a, count: 0, gpu: B200}\n", "nodeGroups[0] (a).count"),
        ("nodeGroups:\n- {name: a, count: 1, gpus: 8}\n", "nodeGroups[0] (a).gpus: Extra inputs"),
        ("nodeGroups: []\n", "nodeGroups: List should have at least 1 item"),
        ("nodes: []\n", "nodeGroups: Field required"),
        ("nodeGroups: [\n", "not valid YAML"),
        (
            "nodeGroups:\n- {name: a, count: 1}\n- {name: a, count: 2}\n",
            "node group names must be unique; repeated: a",
        ),
        ("nodeGroups:\n- {name: Bad_Name, count: 1}\n", "nodeGroups[0] (Bad_Name).name"),
    ],
)
def test_bad_fleet_is_one_line_naming_the_entry(text: str, expected: str) -> None:
    with pytest.raises(errors.FleetError) as info:
        fleet.parse(text, source="f.yaml")
    message = str(info.value)
    assert message.startswith("f.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_missing_fleet_file_is_a_fleet_error(tmp_path: object) -> None:
    with pytest.raises(errors.FleetError, match="cannot read fleet file"):
        fleet.load("/nonexistent/fleet.yaml")
