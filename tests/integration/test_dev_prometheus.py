"""The dev cluster's Prometheus finds pods by Kubernetes service discovery and scrapes them.

A pod created on a KWOK GPU node with the ``prometheus.io/*`` annotations becomes an
active target of job ``kubernetes-pods`` at ``<pod IP>:<port><path>``, and, as a GPU pod,
of job ``gpu`` at ``<pod IP>:9400/metrics``. Nothing listens at a pod's IP until the test
starts a tiny HTTP server there (pod IPs are loopback addresses), so an ``up == 1``
series shows a real scrape. Prometheus reads pods as its own least-privileged user.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpufleet.devcluster import build, certs, components, errors, prometheus_config
from gpufleet.devcluster import cluster as clusters
from gpufleet.hardware import catalog
from gpufleet.ports import free_port
from tests.conftest import LocalCluster
from tests.integration.test_dev_cluster_cli import _processes_of
from tests.waiting import until

pytestmark = pytest.mark.integration

# Text exposition format 0.0.4: Prometheus 3 refuses a scrape without a valid type.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def _prometheus(cluster: LocalCluster) -> str:
    url = cluster.handle.prometheus_url
    if url is None:
        pytest.skip(f"cluster {cluster.name!r} runs without Prometheus (--no-prometheus)")
    return url


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _get(
        f"{prom}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    )["data"]["result"]
    return result


@contextlib.contextmanager
def _serving(host: str, port: int, path: str, body: str) -> Iterator[None]:
    """An HTTP server at ``host:port`` answering ``path`` with ``body`` as metrics."""

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == path
            payload = body.encode() if found else b"not found\n"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", TEXT_FORMAT)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _pod(name: str, *, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    """A one-GPU pod pinned to the H100 nodes; its image is never pulled (KWOK)."""
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "nodeSelector": {catalog.PRODUCT_LABEL: catalog.get("H100-80GB").primary_product},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [
                {
                    "name": "main",
                    "image": "registry.invalid/metrics-probe:test",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }


def _running(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    def probe() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

    found: client.V1Pod = until(f"pod {name} Running with an IP", probe)
    return found


def _targets(prom: str, namespace: str) -> dict[str, Any]:
    """Active targets of ``namespace`` by (job, pod); dropped pods' names by job."""
    data = _get(f"{prom}/api/v1/targets")["data"]
    active = {
        (t["labels"]["job"], t["labels"]["pod"]): t
        for t in data["activeTargets"]
        if t["labels"].get("namespace") == namespace
    }
    dropped: dict[str, set[str]] = {}
    for t in data.get("droppedTargets", []):
        seen = t["discoveredLabels"]
        if seen.get("__meta_kubernetes_namespace") == namespace:
            job = t.get("scrapePool") or seen["job"]
            dropped.setdefault(job, set()).add(seen["__meta_kubernetes_pod_name"])
    return {"active": active, "dropped": dropped}


def test_prometheus_is_ready_and_is_the_pinned_release(cluster: LocalCluster) -> None:
    prom = _prometheus(cluster)
    with urllib.request.urlopen(f"{prom}/-/ready", timeout=5) as resp:
        assert resp.status == 200
    info = _get(f"{prom}/api/v1/status/buildinfo")["data"]
    assert info["version"] == build.prometheus_release(build.PROMETHEUS_VERSION) == "3.16.0"
    assert cluster.handle.proc("prometheus").exe == str(build.binary_path("prometheus"))


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "pods", "yes"),
        ("watch", "pods", "yes"),
        ("get", "pods", "yes"),
        ("create", "pods", "no"),
        ("list", "secrets", "no"),
        ("list", "nodes", "no"),
        ("list", "configmaps", "no"),
    ],
)
def test_prometheus_identity_may_read_pods_and_nothing_else(
    cluster: LocalCluster, verb: str, resource: str, allowed: str
) -> None:
    _prometheus(cluster)
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, "-A", f"--as={certs.PROMETHEUS.user}", check=False
    )
    assert result.stdout.strip() == allowed


def test_an_annotated_gpu_pod_is_discovered_labelled_and_scraped(
    cluster: LocalCluster, namespace: str
) -> None:
    prom = _prometheus(cluster)
    core = client.CoreV1Api(cluster.api_client)
    # Created first: once the annotated pod (created later) is a target, discovery has
    # seen this one too, so its absence from the active targets means something.
    core.create_namespaced_pod(namespace, _pod("plain", labels={"app": "plain"}, annotations={}))
    port = free_port()
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/custom-metrics",
    }
    labels = {"app": "probe", "gpufleet.io/gpu": "H100-80GB"}
    core.create_namespaced_pod(namespace, _pod("scraped", labels=labels, annotations=annotations))
    pod = _running(core, namespace, "scraped")
    ip = pod.status.pod_ip
    gpu_port = prometheus_config.GPU_METRICS_PORT
    with (
        _serving(ip, port, "/custom-metrics", "gpufleet_test_probe 1\n"),
        _serving(ip, gpu_port, "/metrics", 'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 42\n'),
    ):

        def both_up() -> dict[str, Any] | None:
            seen = _targets(prom, namespace)
            jobs = [(prometheus_config.POD_JOB, "scraped"), (prometheus_config.GPU_JOB, "scraped")]
            ok = all(seen["active"].get(k, {}).get("health") == "up" for k in jobs)
            return seen if ok else None

        seen = until("both targets of pod 'scraped' up", both_up, timeout=60)
        annotated = seen["active"][(prometheus_config.POD_JOB, "scraped")]
        assert annotated["scrapeUrl"] == f"http://{ip}:{port}/custom-metrics"
        expected = {
            "instance": f"{ip}:{port}",
            "namespace": namespace,
            "pod": "scraped",
            "pod_ip": ip,
            "node": pod.spec.node_name,
            "app": "probe",
            "gpufleet_io_gpu": "H100-80GB",
        }
        assert expected.items() <= annotated["labels"].items()
        gpu = seen["active"][(prometheus_config.GPU_JOB, "scraped")]
        assert gpu["scrapeUrl"] == f"http://{ip}:{gpu_port}/metrics"
        assert {"instance": f"{ip}:{gpu_port}", "pod": "scraped", "pod_ip": ip}.items() <= gpu[
            "labels"
        ].items()
        assert not [k for k in seen["active"] if k[1] == "plain"], "unannotated, no GPU label"
        for job in (prometheus_config.POD_JOB, prometheus_config.GPU_JOB):
            assert "plain" in seen["dropped"].get(job, set()), f"{job} saw and dropped it"

        selector = f'namespace="{namespace}",pod="scraped"'
        up = until(
            "up == 1 for both jobs",
            lambda: [r for r in _query(prom, f"up{{{selector}}}") if r["value"][1] == "1"],
        )
        assert sorted(r["metric"]["job"] for r in up) == ["gpu", "kubernetes-pods"]
        probe = until(
            "the pod's own metric", lambda: _query(prom, f"gpufleet_test_probe{{{selector}}}")
        )
        assert probe[0]["metric"]["instance"] == f"{ip}:{port}"
        util = until("the GPU metric", lambda: _query(prom, f"DCGM_FI_DEV_GPU_UTIL{{{selector}}}"))
        assert (util[0]["metric"]["pod_ip"], util[0]["value"][1]) == (ip, "42")


def test_a_prometheus_that_fails_to_start_stops_the_whole_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = components.prometheus

    def broken(*args: Any, **kwargs: Any) -> list[str]:
        return [*real(*args, **kwargs), "--no-such-flag"]

    monkeypatch.setattr(components, "prometheus", broken)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("nodeGroups:\n- {name: cpu, count: 1}\n")
    name = f"promfail-{os.getpid()}"
    try:
        with pytest.raises(errors.StartFailed) as info:
            clusters.up(name, fleet_file=str(fleet), progress=lambda _m: None)
        assert "prometheus exited during start-up" in str(info.value)
        assert "no-such-flag" in str(info.value), "the log tail says why"
        assert not _processes_of(name), "processes of the failed cluster left running"
        assert clusters.load(name) is None
    finally:
        clusters.down(name, progress=lambda _m: None)
