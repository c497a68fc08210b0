"""The router's configuration file, validated at start.

```yaml
backends:            # static endpoints (what `gpufleet sim fleet` writes) ...
- {url: http://127.0.0.1:8001, model: llama-3.1-8b, gpu: H100-80GB, tensorParallelSize: 1}
kubernetes:          # ... or discovery of the policy's pools through the Kubernetes API
  namespace: default
  pools: [a, b]      # the pools to route (the operator resolves them); unset = policy's
  poolModels: {a: llama-3.1-8b}  # each pool's served model: requests held while it has no pod
  configMap: p-router  # watch this ConfigMap's router.yaml and apply changes live
  policyName: p      # shown in /stats
policyGeneration: 7  # the RoutingPolicy generation this document renders (shown in /stats)
policy: {strategy: cost}   # a RoutingPolicy spec (gpufleet.api), defaults filled in
apiKeys:             # tenant name -> where its key is; tenants are policy.admission.tenants
  acme: {env: ACME_KEY}    # or {value: ...}, {file: ...}, {secret: {name: s, key: token}}
prometheusCaFile: /etc/gpufleet/prometheus-ca/ca.crt   # CA bundle for an https Prometheus
```

A standalone policy may omit ``pools`` (static backends need none): it is then treated
as ``pools: [static]``. ``load`` raises ``ConfigError`` whose message names every bad
key by its dotted path.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml

from gpufleet.api import common
from gpufleet.api.common import ApiModel, GpuName
from gpufleet.api.routingpolicy import RoutingPolicySpec

MIB = 1024 * 1024
ObjectName = Annotated[str, pydantic.Field(max_length=253, pattern=common.DNS_SUBDOMAIN)]
ModelName = Annotated[str, pydantic.Field(min_length=1, max_length=128)]
# Secret name -> its data as the API serves it (key -> base64 value).
Secrets = Mapping[str, Mapping[str, str]]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the keys at fault."""


class Backend(ApiModel):
    url: str = pydantic.Field(pattern=r"^https?://[^\s/]+$", description="Base URL, no path.")
    model: ModelName = pydantic.Field(description="Served model name.")
    gpu: GpuName
    tensor_parallel_size: int = pydantic.Field(default=1, ge=1, le=64)
    metrics_url: str | None = pydantic.Field(
        default=None, pattern=r"^https?://[^\s/]+$", description="DCGM exporter base URL."
    )
    kv_cache_tokens: int | None = pydantic.Field(
        default=None, ge=1, description="KV capacity; unset = planned from the catalogs."
    )
    cost_per_gpu_hour: float | None = pydantic.Field(
        default=None, ge=0, description="Dollars per GPU-hour (as a variant's costPerGpuHour)."
    )
    capacity_type: Literal["on-demand", "spot"] = pydantic.Field(
        default="on-demand", description="As a variant's capacityType."
    )


class KubernetesSource(ApiModel):
    """Where the pools' endpoints are listed.

    ``endpointslices`` (default) reads the addresses the EndpointSlice controller
    publishes for each pool's Service. ``pods`` reads the pools' pods directly (ready,
    not terminating, by their IP), as inference gateways that select pods do; the local
    dev cluster needs it because its pods have loopback IPs, which the API server does
    not accept in EndpointSlices.
    """

    namespace: str = pydantic.Field(min_length=1, max_length=63)
    kubeconfig: Path | None = None
    port_name: str = "http"
    source: Literal["endpointslices", "pods"] = "endpointslices"
    pools: tuple[ObjectName, ...] | None = pydantic.Field(
        default=None, description="Pools to route; unset = the policy's pools/poolSelector."
    )
    config_map: ObjectName | None = pydantic.Field(
        default=None, description="ConfigMap whose router.yaml is watched and applied live."
    )
    policy_name: str | None = pydantic.Field(
        default=None, max_length=253, description="The RoutingPolicy rendered (for /stats)."
    )
    pool_models: dict[ObjectName, ModelName] = pydantic.Field(
        default_factory=dict,
        description=(
            "Pool -> the model it serves, known while the pool has no ready pod: a request "
            "for it is held (scale from zero) instead of answered 404."
        ),
    )

    @pydantic.model_validator(mode="after")
    def _models_of_routed_pools(self) -> KubernetesSource:
        if self.pools is not None:
            unknown = sorted(set(self.pool_models) - set(self.pools))
            if unknown:
                raise ValueError(f"poolModels names pools not in pools: {unknown}")
        return self

    def watch_key(self) -> tuple[object, ...]:
        """What the API watches depend on: a change restarts them."""
        return (self.namespace, self.kubeconfig, self.source, self.pools, self.config_map)


class SecretKey(ApiModel):
    """A key of a Secret in the router's namespace, read (and watched) through the API."""

    name: ObjectName
    key: str = pydantic.Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class KeySource(ApiModel):
    """Exactly one of the key itself, an environment variable, a file, or a Secret key."""

    value: str | None = pydantic.Field(default=None, min_length=8, repr=False)
    env: str | None = None
    file: Path | None = None
    secret: SecretKey | None = None

    @pydantic.model_validator(mode="after")
    def _one(self) -> KeySource:
        if sum(x is not None for x in (self.value, self.env, self.file, self.secret)) != 1:
            raise ValueError("set exactly one of value, env, file, secret")
        return self

    def read(self, secrets: Secrets) -> str:
        """The key; a ``secret`` source is looked up in ``secrets`` (``KeyError`` when
        the Secret or its key is missing, ``ValueError`` when not base64)."""
        if self.value is not None:
            return self.value
        if self.env is not None:
            return os.environ.get(self.env, "")
        if self.secret is not None:
            encoded = secrets[self.secret.name][self.secret.key]
            return base64.b64decode(encoded, validate=True).decode().strip()
        assert self.file is not None
        return self.file.read_text().strip()


class Limits(ApiModel):
    max_body_bytes: int = pydantic.Field(default=8 * MIB, ge=1024, le=1024 * MIB)
    max_in_flight_per_endpoint: int = pydantic.Field(default=256, ge=1, le=100_000)
    max_tokens_limit: int = pydantic.Field(
        default=1_000_000, ge=1, description="max_tokens above this are rejected (400)."
    )


class HealthCheck(ApiModel):
    interval_seconds: float = pydantic.Field(default=5.0, gt=0, le=300)
    timeout_seconds: float = pydantic.Field(default=2.0, gt=0, le=60)
    path: str = "/health"


class RouterConfig(ApiModel):
    backends: tuple[Backend, ...] = ()
    kubernetes: KubernetesSource | None = None
    policy: RoutingPolicySpec
    api_keys: dict[str, KeySource] = pydantic.Field(default_factory=dict)
    limits: Limits = pydantic.Field(default_factory=Limits)
    health_check: HealthCheck = pydantic.Field(default_factory=HealthCheck)
    drain_seconds: float = pydantic.Field(default=10.0, ge=0, le=3600)
    debug_headers: bool = False
    policy_generation: int | None = pydantic.Field(default=None, ge=0)
    prometheus_ca_file: Path | None = None

    @pydantic.model_validator(mode="after")
    def _sources(self) -> RouterConfig:
        if bool(self.backends) == (self.kubernetes is not None):
            raise ValueError("set exactly one of backends and kubernetes")
        if self.kubernetes is None and self.secret_names():
            raise ValueError(
                "apiKeys: a secret key source needs kubernetes (the API it is read from)"
            )
        tenants = {t.name for t in self.policy.admission.tenants}
        unknown = sorted(set(self.api_keys) - tenants)
        if unknown:
            raise ValueError(f"apiKeys names tenants not in policy.admission.tenants: {unknown}")
        missing = sorted(tenants - set(self.api_keys))
        if missing:
            raise ValueError(f"apiKeys lacks a key for tenants {missing}")
        return self

    def secret_names(self) -> frozenset[str]:
        """The Secrets that hold tenants' keys."""
        return frozenset(s.secret.name for s in self.api_keys.values() if s.secret is not None)

    def keys(self, secrets: Secrets | None = None) -> dict[str, str]:
        """Tenant -> API key, read now; ``secrets`` holds the data (base64, as the API
        serves it) of the Secrets named by ``secret`` sources. ``ConfigError`` names the
        tenant whose key is empty or unreadable."""
        return {
            tenant: _key(tenant, source, secrets or {}) for tenant, source in self.api_keys.items()
        }


def _key(tenant: str, source: KeySource, secrets: Secrets) -> str:
    try:
        key = source.read(secrets)
    except OSError as exc:
        raise ConfigError(f"apiKeys.{tenant}.file: {exc.strerror}") from exc
    except KeyError as exc:
        assert source.secret is not None
        ref = source.secret
        what = (
            f"Secret {ref.name} not found"
            if ref.name not in secrets
            else f"Secret {ref.name} has no key {ref.key}"
        )
        raise ConfigError(f"apiKeys.{tenant}.secret: {what}") from exc
    except ValueError as exc:
        raise ConfigError(f"apiKeys.{tenant}.secret: the value is not base64 text") from exc
    if not key:
        raise ConfigError(f"apiKeys.{tenant}: the key is empty")
    return key


def _with_pools(raw: Any) -> Any:
    if isinstance(raw, dict) and isinstance(raw.get("policy"), dict):
        policy = raw["policy"]
        if "pools" not in policy and "poolSelector" not in policy:
            return {**raw, "policy": {**policy, "pools": ["static"]}}
    return raw


def _describe(exc: pydantic.ValidationError) -> str:
    lines = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"]) or "(top level)"
        lines.append(f"{path}: {error['msg']}")
    return "; ".join(lines)


def parse(raw: object) -> RouterConfig:
    """Validate a loaded document; ``ConfigError`` names the bad keys."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a YAML mapping with backends/kubernetes and policy")
    try:
        return RouterConfig.model_validate(_with_pools(raw))
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def load(path: Path) -> RouterConfig:
    """Read and validate ``path``."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from exc
    return parse(raw)
