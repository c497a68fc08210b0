"""The pure parts of the control-plane build and launch: go.mod rendering and flags."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gpufleet.devcluster import build, command, components, errors
from gpufleet.devcluster import cluster as clusters

UPSTREAM = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/apiserver => ./staging/src/k8s.io/apiserver
)
"""


def test_staging_modules_are_read_from_upstream_go_mod() -> None:
    assert build.staging_modules(UPSTREAM) == ["k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go"]
    assert build.required_go_version(UPSTREAM) == "1.26.0"


def test_wrapper_go_mod_pins_staging_modules_to_published_versions() -> None:
    kube = next(c for c in build.components() if c.name == "kubernetes")
    text = build.wrapper_go_mod(
        kube, go_version="1.26.0", staging=["k8s.io/api", "k8s.io/client-go"]
    )
    minor = kube.version.split(".", 1)[1]
    assert f"require k8s.io/kubernetes {kube.version}" in text
    assert f"\tk8s.io/api => k8s.io/api v0.{minor}\n" in text
    assert f"\tk8s.io/client-go => k8s.io/client-go v0.{minor}\n" in text
    assert "go 1.26.0" in text


def test_wrapper_without_staging_has_no_replace() -> None:
    kwok = next(c for c in build.components() if c.name == "kwok")
    assert "replace" not in build.wrapper_go_mod(kwok, go_version="1.26.0", staging=[])


def test_kubernetes_is_at_least_1_33_and_binaries_are_all_there() -> None:
    kube = next(c for c in build.components() if c.name == "kubernetes")
    major, minor = kube.version.lstrip("v").split(".")[:2]
    assert (int(major), int(minor)) >= (1, 33)
    names = {b for c in build.components() for b in build.binary_names(c)}
    assert names == {
        "etcd",
        "kwok",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "prometheus",
        "promtool",
        "helm",
    }


def test_helm_is_v3_with_its_version_and_kubernetes_minor_stamped() -> None:
    helm = _component("helm")
    assert (helm.module, helm.version, build.binary_names(helm)) == (
        "helm.sh/helm/v3",
        "v3.22.0",
        ("helm",),
    )
    assert "-X helm.sh/helm/v3/internal/version.version=v3.22.0" in helm.ldflags
    # Unstamped, `helm lint` and `.Capabilities` assume Kubernetes 1.20.
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" in helm.ldflags
    assert "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37" in helm.ldflags


@pytest.mark.parametrize(
    ("module_version", "release"),
    [("v0.316.0", "3.16.0"), ("v0.300.1", "3.0.1"), ("v0.54.1", "0.54.1"), ("v0.1002.3", "10.2.3")],
)
def test_prometheus_release_is_read_from_the_module_version(
    module_version: str, release: str
) -> None:
    assert build.prometheus_release(module_version) == release


def _component(name: str) -> build.Component:
    return next(c for c in build.components() if c.name == name)


def test_prometheus_is_3_16_with_only_kubernetes_discovery_and_a_stamped_version() -> None:
    prom = _component("prometheus")
    assert (prom.module, prom.version) == ("github.com/prometheus/prometheus", "v0.316.0")
    assert build.binary_names(prom) == ("prometheus",)
    assert prom.tags == ("remove_all_sd", "enable_kubernetes_sd")
    assert "-X github.com/prometheus/common/version.Version=3.16.0" in prom.ldflags
    assert "-X github.com/prometheus/common/version.Revision=v0.316.0" in prom.ldflags
    assert "-X github.com/prometheus/common/version.Branch=" in prom.ldflags


@pytest.mark.parametrize(
    ("name", "tags"),
    [
        ("prometheus", ["-tags=remove_all_sd,enable_kubernetes_sd"]),
        ("kwok", []),
        ("kubernetes", []),
    ],
)
def test_build_command_passes_tags_only_when_a_component_has_them(
    name: str, tags: list[str]
) -> None:
    comp = _component(name)
    argv = build.build_command(comp, go="/go", target="/out/")
    assert [a for a in argv if a.startswith("-tags")] == tags
    assert argv[:3] == ["/go", "build", "-trimpath"]
    assert f"-ldflags={comp.ldflags}" in argv
    assert argv[-len(comp.packages) :] == list(comp.packages)
    assert argv[argv.index("-o") + 1] == "/out/"


def test_prometheus_listens_on_loopback_with_its_config_and_data_in_the_cluster(
    tmp_path: Path,
) -> None:
    layout = components.Layout(tmp_path)
    argv = components.prometheus(Path("/bin/prometheus"), layout, 9090)
    assert argv[0] == "/bin/prometheus"
    assert "--web.listen-address=127.0.0.1:9090" in argv
    assert f"--config.file={tmp_path / 'prometheus.yml'}" in argv
    assert f"--storage.tsdb.path={tmp_path / 'prometheus'}" in argv


def test_binary_path_lives_in_the_cache(tmp_path: Path) -> None:
    assert build.binary_path("kubectl", root=tmp_path).parent.parent == tmp_path / "bin"


def test_pod_cidr_is_loopback_and_differs_by_name() -> None:
    first, second = components.pod_cidr("a"), components.pod_cidr("b")
    for cidr in (first, second):
        octets = cidr.split("/")[0].split(".")
        assert octets[0] == "127" and 64 <= int(octets[1]) < 192
    assert components.pod_cidr("a") == first
    assert len({components.pod_cidr(str(i)) for i in range(20)}) > 10


def test_apiserver_enforces_rbac_node_authz_and_sa_signing(tmp_path: Path) -> None:
    layout = components.Layout(tmp_path)
    ports = components.Ports(1, 2, 3, 4, 5, 6)
    assert ports.prometheus is None, "optional components have no port unless asked for"
    argv = components.apiserver(Path("/bin/kube-apiserver"), layout, ports)
    assert "--authorization-mode=Node,RBAC" in argv
    assert f"--service-account-signing-key-file={layout.pki.sa_key}" in argv
    assert "--etcd-servers=http://127.0.0.1:1" in argv
    assert "--secure-port=3" in argv


def test_missing_go_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(errors.ToolMissing, match=r"install Go 1\.26 or newer"):
        build.find_go(fallbacks=(str(tmp_path / "go"),))
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert build.find_go(fallbacks=()) == str(fake)


@pytest.mark.parametrize(
    ("addons", "prometheus_port", "expected"),
    [
        (
            ("prometheus",),
            9090,
            ["export KUBECONFIG=/c/kubeconfig", "export PROMETHEUS_URL=http://127.0.0.1:9090"],
        ),
        ((), None, ["export KUBECONFIG=/c/kubeconfig"]),
    ],
)
def test_up_ends_with_the_shell_lines_of_what_runs(
    addons: tuple[str, ...], prometheus_port: int | None, expected: list[str]
) -> None:
    ports = components.Ports(1, 2, 3, 4, 5, 6, prometheus=prometheus_port)
    started = clusters.Cluster("c", components.Layout(Path("/c")), ports, (), addons=addons)
    assert command.exports(started) == expected
    assert started.prometheus_url == (f"http://127.0.0.1:{prometheus_port}" if addons else None)


def test_a_second_build_of_a_component_waits_for_the_first_and_finds_it_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two builds into one cache would delete each other's output: the second waits."""
    tool = build.Component("tool", "example.com/tool", "v1.0.0", ("example.com/tool/cmd/tool",))
    builds: list[str] = []
    building = threading.Event()

    def slow_build(component: build.Component, *, root: Path, progress: build.Progress) -> None:
        builds.append(component.name)
        building.set()
        time.sleep(0.3)
        out = build.bin_dir(component, root=root)
        out.mkdir(parents=True)
        (out / "tool").write_text("")

    monkeypatch.setattr(build, "build_component", slow_build)
    said: list[str] = []
    first = threading.Thread(
        target=build.build_missing, args=(tool,), kwargs={"root": tmp_path, "progress": said.append}
    )
    first.start()
    assert building.wait(5)
    assert build.build_missing(tool, root=tmp_path, progress=said.append) is False
    first.join(5)
    assert builds == ["tool"]
    assert "[tool] another process is building it; waiting" in said
    assert build.is_built(tool, root=tmp_path)


@pytest.mark.parametrize(
    ("only", "names"),
    [
        ((), [c.name for c in build.components()]),
        (("prometheus",), ["prometheus"]),
        (("helm", "etcd"), ["etcd", "helm"]),  # build order, not the order asked
    ],
)
def test_build_only_the_named_components(only: tuple[str, ...], names: list[str]) -> None:
    assert [c.name for c in build.selected(only)] == names
