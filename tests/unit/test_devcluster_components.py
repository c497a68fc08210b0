"""The controller-manager and KWOK flags that let a large KWOK fleet register and stay Ready."""

from __future__ import annotations

from pathlib import Path

import yaml

from gpufleet.devcluster import components

LAYOUT = components.Layout(Path("/tmp/cluster"))
PORTS = components.Ports(1, 2, 3, 4, 5, 6)
# Every option KWOK v0.8.0 defaults (pkg/apis/config/v1alpha1/zz_generated.defaults.go)
# apart from the CIDR, which the command line sets: a KwokConfiguration that leaves one
# out gets a zero value, not the default (a zero pod parallelism stops KWOK at start).
KWOK_DEFAULTED = {
    "manageAllNodes", "enableDebuggingHandlers", "enableContentionProfiling",
    "enableProfilingHandler", "podPlayStageParallelism", "nodePlayStageParallelism",
    "nodeLeaseParallelism", "podsOnNodeSyncParallelism", "enablePodsOnNodeSyncListPager",
    "enablePodsOnNodeSyncStreamWatch",
}  # fmt: skip


def flags(argv: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for arg in argv[1:]:
        key, _, value = arg.partition("=")
        found.setdefault(key, []).append(value)
    return found


def test_kwok_reads_its_options_after_the_stages() -> None:
    argv = flags(components.kwok(Path("/bin/kwok"), LAYOUT, PORTS, "c"))
    assert argv["--config"] == [str(LAYOUT.kwok_config), str(components.KWOK_OPTIONS)]
    assert argv["--node-lease-duration-seconds"] == [str(components.NODE_LEASE_SECONDS)]


def test_kwok_options_restate_every_default_and_raise_node_parallelism() -> None:
    docs = list(yaml.safe_load_all(components.KWOK_OPTIONS.read_text()))
    assert [d["kind"] for d in docs] == ["KwokConfiguration"]
    options = docs[0]["options"]
    assert set(options) == KWOK_DEFAULTED
    assert options["nodeLeaseParallelism"] > 4
    assert options["nodePlayStageParallelism"] > 4
    assert all(v > 0 for k, v in options.items() if k.endswith("Parallelism"))


def test_controller_manager_is_not_held_to_the_default_client_rate() -> None:
    argv = flags(components.controller_manager(Path("/bin/kcm"), LAYOUT, PORTS))
    assert float(argv["--kube-api-qps"][0]) > 20
    assert int(argv["--kube-api-burst"][0]) > 30
    assert argv["--controllers"] == ["*,bootstrapsigner,tokencleaner,-ttl-controller"]


def test_a_node_is_declared_lost_only_after_three_missed_lease_renewals() -> None:
    argv = flags(components.controller_manager(Path("/bin/kcm"), LAYOUT, PORTS))
    grace = argv["--node-monitor-grace-period"][0]
    renew_every = components.NODE_LEASE_SECONDS / 4  # KWOK renews as a kubelet does
    assert grace.endswith("s")
    assert float(grace[:-1]) >= 3 * renew_every
