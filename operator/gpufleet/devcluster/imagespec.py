"""What ``gpufleet dev-cluster images`` builds and how the twin's tests run it (pure).

Both Dockerfiles keep their real upstream bases as the default build arguments; here,
with no registry, they are built on bases this machine makes itself:

- ``BASE``: Debian bookworm made with debootstrap (Python 3.11, venv, CA certificates),
  imported once into the container storage — the gpufleet image's ``PYTHON_IMAGE``;
- ``STANDIN``: ``BASE`` with a script in vLLM's place (``worker-image/standin``) — the
  worker image's ``VLLM_IMAGE``, enough to run ``gpufleet worker`` as far as its GPU
  check.

Builds use buildah with chroot isolation (no daemon, no user namespaces), cached layers
and ``--pull=never``; containers run under podman with runc, cgroupfs and explicit
ulimits (the defaults ask for more open files than an unprivileged sandbox allows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

SUITE = "bookworm"
BASE = f"localhost/gpufleet-base:{SUITE}"
STANDIN = f"localhost/gpufleet-vllm-standin:{SUITE}"
STANDIN_CONTEXT = "worker-image/standin"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
TAG = "dev"
# Where the build machine's CA bundle is mounted for pip (never part of an image).
CA_MOUNT = "/run/gpufleet-build-ca.crt"
ULIMITS = ("nofile=4096:4096", "nproc=4096:4096")


@dataclasses.dataclass(frozen=True, slots=True)
class Image:
    """One image of the repository: its Dockerfile, the build argument that names its
    base, and the base it gets here."""

    name: str
    dockerfile: str
    base_arg: str
    base: str

    @property
    def reference(self) -> str:
        return f"localhost/{self.name}:{TAG}"


GPUFLEET = Image("gpufleet", "images/gpufleet/Dockerfile", "PYTHON_IMAGE", BASE)
WORKER = Image("gpufleet-worker", "worker-image/Dockerfile", "VLLM_IMAGE", STANDIN)
IMAGES = (GPUFLEET, WORKER)


def debootstrap_argv(target: Path) -> list[str]:
    """A minimal Debian with what the images' Python needs (the default mirror)."""
    return ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            SUITE, str(target)]  # fmt: skip


def bud_argv(
    image: Image, *, root: Path, ca_bundle: Path | None, storage_driver: str | None
) -> list[str]:
    """``buildah bud`` for ``image`` from the repository at ``root``."""
    argv = ["buildah", *_storage(storage_driver), "bud", "--layers", "--isolation", "chroot",
            "--pull=never", "-f", str(root / image.dockerfile),
            "--build-arg", f"{image.base_arg}={image.base}", "-t", image.reference]  # fmt: skip
    if ca_bundle is not None:
        argv += ["--build-arg", f"PIP_CERT={CA_MOUNT}", "-v", f"{ca_bundle}:{CA_MOUNT}:ro"]
    return [*argv, str(root)]


def standin_argv(*, root: Path, storage_driver: str | None) -> list[str]:
    return ["buildah", *_storage(storage_driver), "bud", "--layers", "--isolation", "chroot",
            "--pull=never", "--build-arg", f"BASE={BASE}", "-t", STANDIN,
            str(root / STANDIN_CONTEXT)]  # fmt: skip


def run_argv(
    reference: str,
    args: Sequence[str],
    *,
    user: str,
    mounts: Sequence[tuple[Path, str]] = (),
    env: Sequence[tuple[str, str]] = (),
    tmpfs: Sequence[str] = (),
    name: str | None = None,
    entrypoint: str | None = None,
    storage_driver: str | None = None,
) -> list[str]:
    """``podman run`` as the pod specs run gpufleet's images: ``user``, a read-only root
    with no writable path but ``tmpfs`` (podman's own /tmp, /var/tmp and /run tmpfs
    are turned off), the host's network (the twin's pod IPs are loopback addresses),
    read-only ``mounts`` (host path, container path)."""
    argv = ["podman", *_storage(storage_driver), "run", "--rm", "--runtime", "runc",
            "--cgroup-manager", "cgroupfs", "--network", "host", "--read-only",
            "--read-only-tmpfs=false", "--user", user]  # fmt: skip
    for limit in ULIMITS:
        argv += ["--ulimit", limit]
    for path in tmpfs:
        argv += ["--tmpfs", path]
    for host, inside in mounts:
        argv += ["-v", f"{host}:{inside}:ro"]
    for key, value in env:
        argv += ["-e", f"{key}={value}"]
    if name is not None:
        argv += ["--name", name]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    return [*argv, reference, *args]


def _storage(driver: str | None) -> list[str]:
    return ["--storage-driver", driver] if driver else []
