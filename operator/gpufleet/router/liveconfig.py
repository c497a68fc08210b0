"""The next configuration, from the current one, the watched ConfigMap and Secrets.

Pure: ``resolve`` gets the ConfigMap's data (None when it does not exist) and the
Secrets' data (name -> key -> base64 value; a Secret not found is absent) and returns
the configuration to serve with its tenants' keys, or raises ``ConfigError`` naming
what is wrong — the caller then keeps serving the last good configuration.

A router started from a file that names ``kubernetes.configMap`` takes its document
from that ConfigMap's ``router.yaml``; one that does not keeps its file's document and
only re-reads the keys. ``kubernetes.kubeconfig`` is where this process finds the API,
not a policy: a document without one keeps the current one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import yaml

from gpufleet import labels
from gpufleet.router import config as cfg


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigState:
    """Which configuration serves: ``loaded`` once one with every tenant key applied;
    ``error`` why the latest change could not be (the previous one keeps serving);
    ``applied_at`` wall-clock time; ``version`` counts applied changes."""

    generation: int | None = None
    error: str = ""
    applied_at: float | None = None
    loaded: bool = True
    version: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Resolved:
    config: cfg.RouterConfig
    keys: dict[str, str]


def resolve(
    current: cfg.RouterConfig, *, config_map: Mapping[str, str] | None, secrets: cfg.Secrets
) -> Resolved:
    """The configuration to apply, or ``ConfigError``."""
    source = current.kubernetes
    name = source.config_map if source else None
    new = current if name is None else _document(current, name, config_map)
    return Resolved(new, new.keys(secrets))


def _document(
    current: cfg.RouterConfig, name: str, config_map: Mapping[str, str] | None
) -> cfg.RouterConfig:
    if config_map is None:
        raise cfg.ConfigError(f"kubernetes.configMap: ConfigMap {name} not found")
    key = labels.ROUTER_CONFIG_KEY
    text = config_map.get(key)
    if text is None:
        raise cfg.ConfigError(f"kubernetes.configMap: ConfigMap {name} has no key {key}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise cfg.ConfigError(f"ConfigMap {name} {key}: not YAML: {exc}") from exc
    new = cfg.parse(raw)
    if new.kubernetes is None:
        raise cfg.ConfigError("kubernetes: a live configuration must keep Kubernetes discovery")
    return _keep_kubeconfig(current, new)


def _keep_kubeconfig(current: cfg.RouterConfig, new: cfg.RouterConfig) -> cfg.RouterConfig:
    old = current.kubernetes.kubeconfig if current.kubernetes else None
    if new.kubernetes is None or new.kubernetes.kubeconfig is not None or old is None:
        return new
    kubernetes = new.kubernetes.model_copy(update={"kubeconfig": old})
    return new.model_copy(update={"kubernetes": kubernetes})
