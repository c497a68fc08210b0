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

ENV_PREFIX = "GPUFLEET_OPERATOR_"


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorConfig:
    """How the operator runs.

    ``resync_seconds`` is the reconcile interval: every pool is reconciled at least this
    often even without events, so drift that no watch reported is repaired within it.
    ``namespaces`` empty means cluster-wide.
    """

    namespaces: tuple[str, ...] = ()
    kubeconfig: Path | None = None
    resync_seconds: float = 60.0
    workers: int = 4
    max_backoff_seconds: float = 300.0
    watch_check_seconds: float = 30.0
    watch_grace_seconds: float = 90.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Defaults overridden by ``GPUFLEET_OPERATOR_<FIELD>`` (namespaces comma-separated)."""
        env = os.environ if env is None else env
        fields: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            if field.name == "namespaces":
                fields[field.name] = tuple(n.strip() for n in raw.split(",") if n.strip())
            elif field.name == "kubeconfig":
                fields[field.name] = Path(raw)
            elif field.name == "workers":
                fields[field.name] = int(raw)
            else:
                fields[field.name] = float(raw)
        return cls(**fields)  # type: ignore[arg-type]
