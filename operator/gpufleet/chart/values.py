"""The chart's values (``charts/gpufleet/values.yaml``): one validated model (pure).

camelCase keys as Helm users write them, every key described (the descriptions become
``values.schema.json``, which Helm checks on install, upgrade, lint and template), unknown
keys refused. The operator settings map one to one onto ``gpufleet operator`` flags
(``gpufleet.controller.command``); Kubernetes pass-through blocks (tolerations,
affinity) are checked by the API server, not here.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from gpufleet import operatorconfig
from gpufleet.api import common

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
DURATION = r"^[0-9]+(ms|s|m|h)$"
JsonObject = dict[str, pydantic.JsonValue]
_OPERATOR = operatorconfig.OperatorConfig()


class Values(common.ApiModel):
    """Base of every values block: camelCase, strict, described — the conventions of the
    API's types (``api.common.ApiModel``), written once there."""


class Image(Values):
    repository: str = pydantic.Field(
        default="ghcr.io/gpufleet/gpufleet",
        min_length=1,
        description="Image of the operator (and, unless routerImage is set, of its routers).",
    )
    tag: str = pydantic.Field(default="", description="Image tag; empty = the chart's appVersion.")
    digest: str = pydantic.Field(
        default="",
        pattern=r"^(sha256:[0-9a-f]{64})?$",
        description="Image digest (sha256:…); when set it pins the image and the tag is ignored.",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = pydantic.Field(
        default="IfNotPresent", description="imagePullPolicy of the operator container."
    )


class ConfigMapKey(Values):
    name: str = pydantic.Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        description="ConfigMap name; empty = none.",
    )
    key: str = pydantic.Field(default="ca.crt", min_length=1, description="Key of the CA bundle.")


class Prometheus(Values):
    """Where the operator's autoscaler reads signals (docs/operator.md, "Autoscaling")."""

    url: str = pydantic.Field(
        default="",
        pattern=r"^(https?://.+)?$",
        description="Prometheus base URL (--prometheus-url); empty = no signals: replicas "
        "kept within minReplicas..maxReplicas and pools started from zero for held requests.",
    )
    ca_config_map: ConfigMapKey = pydantic.Field(
        default_factory=ConfigMapKey,
        description="CA bundle verifying an https Prometheus, mounted from a ConfigMap "
        "(--prometheus-ca-file); unset = the system CAs.",
    )
    insecure_skip_verify: bool = pydantic.Field(
        default=False,
        description="Do not verify an https Prometheus's certificate "
        "(--prometheus-insecure-skip-verify).",
    )
    allow_local: bool = pydantic.Field(
        default=False,
        description="Allow a loopback, link-local or unspecified Prometheus host, in url and "
        "in RoutingPolicies (--allow-local-prometheus); only for a cluster whose pods share "
        "loopback with Prometheus, as the dev cluster's do.",
    )


class OperatorSettings(Values):
    """``gpufleet operator`` flags (docs/operator.md)."""

    watch_namespaces: list[str] = pydantic.Field(
        default_factory=list,
        description="Namespaces to watch (--namespace); empty = every namespace, with a "
        "ClusterRoleBinding. When set, the ClusterRole is bound by a RoleBinding in each.",
        json_schema_extra={"items": {"type": "string", "pattern": DNS_LABEL}},
    )
    resync_seconds: float = pydantic.Field(
        default=_OPERATOR.resync_seconds,
        gt=0,
        description="Every object is reconciled at least this often (--resync-seconds).",
    )
    workers: int = pydantic.Field(
        default=_OPERATOR.workers, ge=1, le=64, description="Reconcile workers."
    )
    policy_poll_seconds: float = pydantic.Field(
        default=_OPERATOR.policy_poll_seconds,
        gt=0,
        description="How often each RoutingPolicy's routers are asked for /stats.",
    )
    router_image: str = pydantic.Field(
        default="",
        description="Image of RoutingPolicy routers that name none; empty = the operator's "
        "image (routers run `gpufleet router`).",
    )
    router_discovery: Literal["endpointslices", "pods"] = pydantic.Field(
        default=_OPERATOR.router_discovery,
        description="How routers find model-server pods: endpointslices, or pods where no "
        "EndpointSlice controller runs (the dev cluster).",
    )
    allowed_image_prefixes: list[str] = pydantic.Field(
        default_factory=lambda: list(operatorconfig.DEFAULT_ALLOWED_IMAGE_PREFIXES),
        min_length=1,
        description="A ModelPool's spec.serving.image must start with one of these "
        "(--allowed-image-prefix): a repository (any tag or digest of it), a prefix ending "
        "in '/' (anything under it) or '*' (any image).",
        json_schema_extra={"items": {"type": "string", "minLength": 1}},
    )
    allow_trust_remote_code: bool = pydantic.Field(
        default=False,
        description="Honour spec.serving.trustRemoteCode (--allow-trust-remote-code): vLLM "
        "then runs code from the model repository.",
    )
    gpu_agent_image: str = pydantic.Field(
        default="",
        description="Image of the gpu-agent sidecar in model-server pods (--gpu-agent-image); "
        "empty = the routers' image.",
    )
    autoscale_seconds: float = pydantic.Field(
        default=_OPERATOR.autoscale_seconds,
        gt=0,
        description="How often the autoscaler decides each ModelPool with autoscaling.mode "
        "gpufleet (--autoscale-seconds).",
    )
    prometheus: Prometheus = pydantic.Field(
        default_factory=lambda: Prometheus(),
        description="The Prometheus the autoscaler reads vLLM's signals from.",
    )
    verbose: bool = pydantic.Field(default=False, description="Log every reconcile.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = pydantic.Field(
        default="INFO", description="Least severe level logged (--log-level)."
    )
    log_format: Literal["text", "json"] = pydantic.Field(
        default="text",
        description="One line of text or one JSON object per record (--log-format), with "
        "time, level and logger.",
    )


class ServiceAccount(Values):
    create: bool = pydantic.Field(default=True, description="Create the operator's ServiceAccount.")
    name: str = pydantic.Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        description="Its name; empty = <release>-operator.",
    )
    annotations: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Annotations (e.g. a cloud IAM role)."
    )


class Rbac(Values):
    create: bool = pydantic.Field(
        default=True,
        description="Create the ClusterRole (rules of deploy/rbac/operator-rbac.yaml) and "
        "its binding(s).",
    )


class Resources(Values):
    requests: dict[str, str] = pydantic.Field(
        default_factory=lambda: {"cpu": "100m", "memory": "256Mi"},
        description="Requests of the operator container.",
        json_schema_extra={"additionalProperties": {"type": "string", "pattern": QUANTITY}},
    )
    limits: dict[str, str] = pydantic.Field(
        default_factory=lambda: {"memory": "512Mi"},
        description="Limits of the operator container (memory only by default: a CPU "
        "limit throttles reconcile bursts).",
        json_schema_extra={"additionalProperties": {"type": "string", "pattern": QUANTITY}},
    )


class PodMonitor(Values):
    enabled: bool = pydantic.Field(
        default=False,
        description="Render a Prometheus Operator PodMonitor for gpufleet's model-server and "
        "router pods (needs the monitoring.coreos.com CRDs).",
    )
    interval: str = pydantic.Field(default="15s", pattern=DURATION, description="Scrape interval.")
    labels: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Extra labels (to match a Prometheus's selector)."
    )


class PrometheusRule(Values):
    enabled: bool = pydantic.Field(
        default=False,
        description="Render a Prometheus Operator PrometheusRule with gpufleet's recording and "
        "alert rules (deploy/observability/gpufleet-rules.yaml; needs the "
        "monitoring.coreos.com CRDs).",
    )
    labels: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description="Extra labels (to match a Prometheus's ruleSelector, e.g. release).",
    )


class GrafanaDashboard(Values):
    enabled: bool = pydantic.Field(
        default=False,
        description="Render a ConfigMap holding gpufleet's Grafana dashboard "
        "(deploy/observability/gpufleet-dashboard.json) for Grafana's dashboard sidecar.",
    )
    namespace: str = pydantic.Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        description="Namespace of the ConfigMap (where the sidecar looks); empty = the release's.",
    )
    labels: dict[str, str] = pydantic.Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels the sidecar selects on (kube-prometheus-stack's default: "
        "grafana_dashboard=1).",
    )
    annotations: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Annotations (e.g. the sidecar's folder annotation)."
    )


class Monitoring(Values):
    pod_monitor: PodMonitor = pydantic.Field(
        default_factory=PodMonitor, description="PodMonitor of the pods gpufleet renders."
    )
    prometheus_rule: PrometheusRule = pydantic.Field(
        default_factory=PrometheusRule, description="gpufleet's recording and alert rules."
    )
    grafana_dashboard: GrafanaDashboard = pydantic.Field(
        default_factory=GrafanaDashboard, description="gpufleet's Grafana dashboard."
    )


class MetricsScraper(Values):
    """The Prometheus that pools' NetworkPolicies admit to the vLLM and GPU agent ports."""

    namespace: str = pydantic.Field(
        default=_OPERATOR.metrics_scraper_namespace,
        min_length=1,
        pattern=DNS_LABEL,
        description="Its namespace (--metrics-scraper-namespace).",
    )
    pod_labels: dict[str, str] = pydantic.Field(
        default_factory=lambda: _OPERATOR.scraper_labels,
        min_length=1,
        description="Labels of its pods (--metrics-scraper-label key=value each).",
    )


class NetworkPolicy(Values):
    """NetworkPolicies: the operator's per ModelPool, and the chart's for the operator."""

    enabled: bool = pydantic.Field(
        default=True,
        description="Render them; false (--no-network-policies) only where the network "
        "plugin enforces none: vLLM's port is then open to every pod that can reach it.",
    )
    metrics_scraper: MetricsScraper = pydantic.Field(
        default_factory=MetricsScraper,
        description="The Prometheus admitted to the pools' metrics.",
    )


class ChartValues(Values):
    """``values.yaml`` of charts/gpufleet."""

    image: Image = pydantic.Field(default_factory=Image, description="The gpufleet image.")
    image_pull_secrets: list[str] = pydantic.Field(
        default_factory=list, description="Names of Secrets to pull the image with."
    )
    operator: OperatorSettings = pydantic.Field(
        default_factory=OperatorSettings, description="Operator settings."
    )
    service_account: ServiceAccount = pydantic.Field(
        default_factory=ServiceAccount, description="The operator's ServiceAccount."
    )
    rbac: Rbac = pydantic.Field(default_factory=Rbac, description="The operator's RBAC.")
    network_policy: NetworkPolicy = pydantic.Field(
        default_factory=NetworkPolicy,
        description="Who may reach the model servers and the operator (docs/operator.md).",
    )
    resources: Resources = pydantic.Field(
        default_factory=Resources, description="Resources of the operator container."
    )
    node_selector: dict[str, str] = pydantic.Field(
        default_factory=dict, description="nodeSelector of the operator pod."
    )
    tolerations: list[JsonObject] = pydantic.Field(
        default_factory=list, description="Tolerations of the operator pod."
    )
    affinity: JsonObject = pydantic.Field(
        default_factory=dict, description="Affinity of the operator pod."
    )
    priority_class_name: str = pydantic.Field(
        default="", description="PriorityClass of the operator pod."
    )
    pod_annotations: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Extra annotations of the operator pod."
    )
    pod_labels: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Extra labels of the operator pod."
    )
    monitoring: Monitoring = pydantic.Field(
        default_factory=Monitoring, description="Prometheus Operator objects (all off)."
    )
