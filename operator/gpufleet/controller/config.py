"""The operator's settings: one frozen value, from command-line flags or the environment.

``gpufleet operator`` builds it from its flags; Kopf's own entry point
(``kopf run -m gpufleet.controller.handlers``) reads the same settings from
``GPUFLEET_OPERATOR_*`` environment variables.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

ENV_PREFIX = "GPUFLEET_OPERATOR_"


# The image the example operator Deployment runs (examples/demo/operator.yaml): routers
# run the same program, ``gpufleet router``.
DEFAULT_ROUTER_IMAGE = "ghcr.io/gpufleet/gpufleet:0.1.0"
Discovery = Literal["endpointslices", "pods"]
ROUTER_DISCOVERY: tuple[Discovery, ...] = ("endpointslices", "pods")


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorConfig:
    """How the operator runs.

    ``resync_seconds`` is the reconcile interval: every object is reconciled at least this
    often even without events, so drift that no watch reported is repaired within it.
    ``namespaces`` empty means cluster-wide. ``router_image`` runs a RoutingPolicy's
    routers unless its ``spec.router.image`` names one; ``router_discovery`` is how they
    find model-server pods (``endpointslices``, or ``pods`` where no EndpointSlice
    controller runs). Every RoutingPolicy is reconciled — its routers' ``/stats`` read,
    each within ``router_stats_timeout_seconds`` — every ``policy_poll_seconds``.
    """

    namespaces: tuple[str, ...] = ()
    kubeconfig: Path | None = None
    resync_seconds: float = 60.0
    workers: int = 4
    max_backoff_seconds: float = 300.0
    watch_check_seconds: float = 30.0
    watch_grace_seconds: float = 90.0
    router_image: str = DEFAULT_ROUTER_IMAGE
    router_discovery: Discovery = "endpointslices"
    policy_poll_seconds: float = 5.0
    router_stats_timeout_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.router_discovery not in ROUTER_DISCOVERY:
            raise ValueError(
                f"router_discovery {self.router_discovery!r}: expected one of "
                + ", ".join(ROUTER_DISCOVERY)
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Defaults overridden by ``GPUFLEET_OPERATOR_<FIELD>`` (namespaces comma-separated)."""
        env = os.environ if env is None else env
        defaults = cls()
        fields: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            if field.name == "namespaces":
                fields[field.name] = tuple(n.strip() for n in raw.split(",") if n.strip())
            elif field.name == "kubeconfig":
                fields[field.name] = Path(raw)
            else:
                fields[field.name] = type(getattr(defaults, field.name))(raw)
        return cls(**fields)  # type: ignore[arg-type]
