"""How the images are built and run here (gpufleet.devcluster.imagespec): table-driven
over the argv each step gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.devcluster import imagespec

ROOT = Path("/src/gpufleet")


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


@pytest.mark.parametrize("image", imagespec.IMAGES, ids=[i.name for i in imagespec.IMAGES])
def test_each_image_builds_offline_on_its_local_base(image: imagespec.Image) -> None:
    argv = imagespec.bud_argv(image, root=ROOT, ca_bundle=None, storage_driver=None)
    assert argv[:2] == ["buildah", "bud"] and argv[-1] == str(ROOT)
    assert "--pull=never" in argv and "--layers" in argv
    assert _pairs(argv, "--isolation") == ["chroot"]
    assert _pairs(argv, "--build-arg") == [f"{image.base_arg}={image.base}"]
    assert _pairs(argv, "-f") == [str(ROOT / image.dockerfile)]
    assert _pairs(argv, "-t") == [f"localhost/{image.name}:dev"]
    assert "-v" not in argv


@pytest.mark.parametrize(
    ("ca", "driver", "volumes", "storage"),
    [
        (None, None, [], []),
        (Path("/etc/ca.crt"), None, [f"/etc/ca.crt:{imagespec.CA_MOUNT}:ro"], []),
        (None, "vfs", [], ["vfs"]),
    ],
    ids=["plain", "host-ca", "vfs"],
)
def test_the_build_ca_is_mounted_for_the_build_only_and_the_driver_passed(
    ca: Path | None, driver: str | None, volumes: list[str], storage: list[str]
) -> None:
    argv = imagespec.bud_argv(imagespec.GPUFLEET, root=ROOT, ca_bundle=ca, storage_driver=driver)
    assert _pairs(argv, "-v") == volumes
    assert _pairs(argv, "--storage-driver") == storage
    assert (f"PIP_CERT={imagespec.CA_MOUNT}" in argv) == (ca is not None)


def test_the_worker_is_built_on_the_stand_in_which_is_built_on_the_base() -> None:
    assert imagespec.WORKER.base == imagespec.STANDIN
    argv = imagespec.standin_argv(root=ROOT, storage_driver=None)
    assert _pairs(argv, "--build-arg") == [f"BASE={imagespec.BASE}"]
    assert argv[-1] == str(ROOT / imagespec.STANDIN_CONTEXT)
    assert (Path(__file__).parents[2] / imagespec.STANDIN_CONTEXT / "vllm").stat().st_mode & 0o111


def test_containers_run_as_the_pod_specs_run_them() -> None:
    argv = imagespec.run_argv(
        "localhost/gpufleet:dev", ["router", "--port", "1"], user="65532:65532",
        mounts=[(Path("/h/r.yaml"), "/etc/r.yaml")], env=[("A", "b")], tmpfs=["/out"],
    )  # fmt: skip
    assert argv[:2] == ["podman", "run"]
    assert argv[-4:] == ["localhost/gpufleet:dev", "router", "--port", "1"]
    assert {"--read-only", "--read-only-tmpfs=false", "--rm"} <= set(argv)
    assert _pairs(argv, "--user") == ["65532:65532"]
    assert _pairs(argv, "--runtime") == ["runc"] and _pairs(argv, "--network") == ["host"]
    assert _pairs(argv, "--cgroup-manager") == ["cgroupfs"]
    assert _pairs(argv, "--ulimit") == list(imagespec.ULIMITS)
    assert _pairs(argv, "-v") == ["/h/r.yaml:/etc/r.yaml:ro"]
    assert _pairs(argv, "-e") == ["A=b"] and _pairs(argv, "--tmpfs") == ["/out"]


def test_the_base_is_debian_with_what_the_images_python_needs() -> None:
    argv = imagespec.debootstrap_argv(Path("/tmp/rootfs"))
    assert argv[-2:] == [imagespec.SUITE, "/tmp/rootfs"]
    assert "--include=python3,python3-venv,ca-certificates" in argv
