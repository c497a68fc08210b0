"""The pure parts of the control-plane build and launch: go.mod rendering and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.devcluster import build, components, errors

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
    }


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
