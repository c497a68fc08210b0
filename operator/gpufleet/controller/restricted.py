"""The restricted Pod Security profile, as every pod the operator renders wears it (pure).

Kubernetes' ``restricted`` Pod Security Standard asks of each pod and container: run as
a non-root user, no privilege escalation, every capability dropped, the runtime's
default seccomp profile. The model-server pods (``podspec``) and the router pods
(``routerpod``) take both contexts from here, each with its image's own user; the root
filesystem is read-only too, so what a container writes goes to a mounted volume.
"""

from __future__ import annotations

from gpufleet.controller import bodies


def container() -> bodies.ContainerSecurityContext:
    """A container's security context under the restricted profile."""
    return bodies.ContainerSecurityContext(
        allowPrivilegeEscalation=False,
        readOnlyRootFilesystem=True,
        runAsNonRoot=True,
        capabilities={"drop": ["ALL"]},
        seccompProfile={"type": "RuntimeDefault"},
    )


def pod(*, run_as: int) -> bodies.PodSecurityContext:
    """A pod's security context under the restricted profile, as user and group
    ``run_as`` (also the group that owns its volumes)."""
    return bodies.PodSecurityContext(
        runAsNonRoot=True,
        runAsUser=run_as,
        runAsGroup=run_as,
        fsGroup=run_as,
        seccompProfile={"type": "RuntimeDefault"},
    )
