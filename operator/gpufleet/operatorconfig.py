"""The operator's settings: one frozen value, from command-line flags or the environment.

``gpufleet operator`` builds it from its flags; Kopf's own entry point
(``kopf run -m gpufleet.controller.handlers``) reads the same settings from
``GPUFLEET_OPERATOR_*`` environment variables; the Helm chart's ``operator`` values take
their defaults from it (``chart.values``). Shared by the operator and its chart, so it
sits below both and imports nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from gpufleet import prometheustarget as target

ENV_PREFIX = "GPUFLEET_OPERATOR_"


# The image the example operator Deployment runs (examples/demo/operator.yaml): routers
# run the same program, ``gpufleet router``.
DEFAULT_ROUTER_IMAGE = "ghcr.io/gpufleet/gpufleet:0.1.0"
# Images a ModelPool may run: vLLM's OpenAI-server repository (the default
# spec.serving.image) and gpufleet's own organisation. An entry naming a repository
# allows any tag or digest of it; one ending in "/" everything under it; "*" any image.
DEFAULT_ALLOWED_IMAGE_PREFIXES = ("docker.io/vllm/vllm-openai", "ghcr.io/gpufleet/")
Discovery = Literal["endpointslices", "pods"]
ROUTER_DISCOVERY: tuple[Discovery, ...] = ("endpointslices", "pods")


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorConfig:
    """How the operator runs.

    ``resync_seconds`` is the reconcile interval: every object is reconciled at least this
    often even without events, so drift that no watch reported is repaired within it.
    ``namespaces`` empty means cluster-wide. ``router_image`` runs a RoutingPolicy's
    routers unless its ``spec.router.image`` names one, and the model-server pods' GPU
    health sidecars unless ``gpu_agent_image`` is set (``agent_image``);
    ``router_discovery`` is how routers find model-server pods (``endpointslices``, or
    ``pods`` where no EndpointSlice controller runs). Every RoutingPolicy is reconciled —
    its routers' ``/stats`` read, each within ``router_stats_timeout_seconds`` — every
    ``policy_poll_seconds``.

    The trust boundary (docs/operator.md): a ModelPool's ``spec.serving.image`` must match
    one of ``allowed_image_prefixes`` (``controller.images``; empty allows none), and its
    ``spec.serving.trustRemoteCode`` is honoured only when ``allow_trust_remote_code``.

    The autoscaler (``controller.autoscaling.autoscaler``) decides every ``autoscale_seconds``,
    reading signals from ``prometheus_url`` (none: it only keeps the replicas within
    bounds and starts pools from zero for held requests); an https Prometheus is
    verified against ``prometheus_ca_file``, else the system CAs, unless
    ``prometheus_insecure_skip_verify`` — the router's semantics. A Prometheus URL — this
    one, or a RoutingPolicy's ``spec.prometheus.url`` — whose host is loopback, link-local
    or unspecified is refused unless ``allow_local_prometheus`` (``prometheustarget``):
    the dev cluster and the tests, where everything lives on loopback.

    With ``network_policies`` (off only where the network plugin enforces none) every
    ModelPool gets a NetworkPolicy (``controller.modelpool.netpolicy``): its ports admit the
    routers of the RoutingPolicies that route it and the metrics scraper, the pods
    labelled ``metrics_scraper_labels`` (``key=value`` each) in namespace
    ``metrics_scraper_namespace``.
    """

    namespaces: tuple[str, ...] = ()
    kubeconfig: Path | None = None
    resync_seconds: float = 60.0
    workers: int = 4
    max_backoff_seconds: float = 300.0
    watch_check_seconds: float = 30.0
    watch_grace_seconds: float = 90.0
    router_image: str = DEFAULT_ROUTER_IMAGE
    gpu_agent_image: str = ""
    router_discovery: Discovery = "endpointslices"
    policy_poll_seconds: float = 5.0
    router_stats_timeout_seconds: float = 2.0
    allowed_image_prefixes: tuple[str, ...] = DEFAULT_ALLOWED_IMAGE_PREFIXES
    allow_trust_remote_code: bool = False
    autoscale_seconds: float = 15.0
    prometheus_url: str = ""
    prometheus_ca_file: Path | None = None
    prometheus_insecure_skip_verify: bool = False
    prometheus_timeout_seconds: float = 5.0
    allow_local_prometheus: bool = False
    network_policies: bool = True
    metrics_scraper_namespace: str = "monitoring"
    metrics_scraper_labels: tuple[str, ...] = ("app.kubernetes.io/name=prometheus",)

    @property
    def agent_image(self) -> str:
        """The image of the ``gpu-agent`` sidecars: ``gpu_agent_image``, else the routers'."""
        return self.gpu_agent_image or self.router_image

    def __post_init__(self) -> None:
        if self.router_discovery not in ROUTER_DISCOVERY:
            raise ValueError(
                f"router_discovery {self.router_discovery!r}: expected one of "
                + ", ".join(ROUTER_DISCOVERY)
            )
        if self.autoscale_seconds <= 0:
            raise ValueError(f"autoscale_seconds {self.autoscale_seconds}: must be positive")
        local = target.problem(
            "--prometheus-url", self.prometheus_url, allow_local=self.allow_local_prometheus
        )
        if local is not None:
            raise ValueError(local)
        for pair in self.metrics_scraper_labels:
            if "=" not in pair or not pair.partition("=")[0]:
                raise ValueError(
                    f"--metrics-scraper-label {pair!r}: expected key=value (a pod label of "
                    "the metrics scraper, e.g. app.kubernetes.io/name=prometheus)"
                )

    @property
    def scraper_labels(self) -> dict[str, str]:
        """``metrics_scraper_labels`` as a label map."""
        return {k: v for k, _, v in (p.partition("=") for p in self.metrics_scraper_labels)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Defaults overridden by ``GPUFLEET_OPERATOR_<FIELD>``: lists comma-separated,
        booleans ``true``/``false`` (also ``1``/``0``, ``yes``/``no``)."""
        env = os.environ if env is None else env
        defaults = cls()
        fields: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            fields[field.name] = _from_text(field.name, raw, getattr(defaults, field.name))
        return cls(**fields)  # type: ignore[arg-type]


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _from_text(name: str, raw: str, default: object) -> object:
    if name in ("kubeconfig", "prometheus_ca_file"):
        return Path(raw)
    if isinstance(default, tuple):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if isinstance(default, bool):
        if raw.strip().lower() not in _TRUE + _FALSE:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected true or false")
        return raw.strip().lower() in _TRUE
    if isinstance(default, int | float):
        return type(default)(raw)
    return raw
