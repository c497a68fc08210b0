"""The one Kubernetes client factory of operator, router and dev cluster.

Where the credentials come from, first match wins: an explicit kubeconfig file;
``$KUBECONFIG``; the in-cluster ServiceAccount (``KUBERNETES_SERVICE_HOST`` and the
mounted token); ``~/.kube/config``. ``$KUBECONFIG`` comes before in-cluster config so a
process can be pointed at a cluster explicitly from inside a pod too (the dev cluster's
pod runner gives gpufleet's own pods a kubeconfig for their ServiceAccount that way).
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config

POOL_CONNECTIONS = 16


def new_client(kubeconfig: Path | str | None = None) -> client.ApiClient:
    """A client for the first credentials found (see the module docstring)."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    if path is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            pass
        else:
            api: client.ApiClient = client.ApiClient()
            api.configuration.connection_pool_maxsize = POOL_CONNECTIONS
            return api
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(path) if path else None
    )
    api.configuration.connection_pool_maxsize = POOL_CONNECTIONS
    return api
