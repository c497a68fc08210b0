"""The digital twin: pods on KWOK GPU nodes that really serve, and a Prometheus that
scrapes them.

The session cluster runs the pod runner (simulators at ``--speed 10`` with a 20 s
simulated, 2 s wall, model load) and Prometheus. A ModelPool reconciled by the real
operator gets one simulator per pod at the pod's own IP; the tests kill, delete and
query those processes as a user of a real cluster would.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpufleet import labels
from gpufleet.devcluster import twin
from tests.conftest import LocalCluster
from tests.integration.operator_harness import GROUP, PLURAL, VERSION, Operator, condition, get_pool
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
POOL = "llama-8b"
POLICY = "twin"
SERVED = "llama-3.1-8b-instruct"
GENERATIONS = {"h100": "H100-80GB", "a100": "A100-80GB"}


def _pool() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelPool",
        "metadata": {"name": POOL},
        "spec": {
            "model": {"name": SERVED, "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                      "catalogName": "llama-3.1-8b", "maxModelLen": 8192},
            "variants": [{"name": v, "gpu": g, "minReplicas": 1, "maxReplicas": 2}
                         for v, g in GENERATIONS.items()],
        },
    }  # fmt: skip


def _get(url: str, *, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _runner_pods(cluster: LocalCluster, namespace: str) -> dict[str, dict[str, Any]]:
    port = cluster.handle.ports.pod_runner
    assert port is not None, "the session cluster runs without the pod runner"
    _, body = _get(twin.pods_url(port))
    return {p["pod"]: p for p in json.loads(body or "[]") if p["namespace"] == namespace}


def _pods(cluster: LocalCluster, namespace: str) -> list[client.V1Pod]:
    core = client.CoreV1Api(cluster.api_client)
    found = core.list_namespaced_pod(namespace, label_selector=f"gpufleet.io/pool={POOL}")
    return [p for p in found.items if p.metadata.deletion_timestamp is None]


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _apply_pool(cluster: LocalCluster, namespace: str) -> None:
    api = client.CustomObjectsApi(cluster.api_client)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _pool())


def _all_ready(cluster: LocalCluster, namespace: str) -> list[client.V1Pod]:
    pods = _pods(cluster, namespace)
    return pods if len(pods) == len(GENERATIONS) and all(_ready(p) for p in pods) else []


@pytest.mark.timeout(120)
def test_pool_pods_load_then_serve_at_their_pod_ips(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _apply_pool(cluster, namespace)

    def with_ips() -> list[client.V1Pod]:
        pods = [p for p in _pods(cluster, namespace) if p.status.pod_ip]
        return pods if len(pods) == len(GENERATIONS) else []

    pods = until("both variants' pods Running with an IP", with_ips)
    # Loading: the simulator exists but its API is not up, so the pod is not Ready.
    assert not any(_ready(p) for p in pods), "Ready before the model was loaded"
    pods = until("both pods Ready", lambda: _all_ready(cluster, namespace), timeout=60)
    until("the pool Ready", lambda: condition(get_pool(cluster, namespace, POOL), "Ready")
          .get("status") == "True")  # fmt: skip
    for pod in pods:
        started = pod.status.container_statuses[0].state.running.started_at
        ready_at = next(c.last_transition_time for c in pod.status.conditions if c.type == "Ready")
        assert (ready_at - started).total_seconds() >= 1, "Ready sooner than the 2 s load"
        base = f"http://{pod.status.pod_ip}:8000"
        status, body = _get(base + "/v1/models")
        assert status == 200 and json.loads(body)["data"][0]["id"] == SERVED
        status, body = _get(base + "/metrics")
        assert status == 200 and "vllm:num_requests_running" in body
        status, body = _get(f"http://{pod.status.pod_ip}:9400/metrics")
        assert status == 200 and "DCGM_FI_DEV_GPU_UTIL" in body
    by_name = _runner_pods(cluster, namespace)
    gpus = {by_name[p.metadata.name]["gpu"] for p in pods}
    assert gpus == set(GENERATIONS.values())


@pytest.mark.timeout(150)
def test_killed_process_restarts_and_deleted_pod_stops_its_process(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _apply_pool(cluster, namespace)
    pods = until("both pods Ready", lambda: _all_ready(cluster, namespace), timeout=60)
    victim = pods[0].metadata.name
    first = _runner_pods(cluster, namespace)[victim]["containers"][0]["pid"]
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        pod = next((p for p in _pods(cluster, namespace) if p.metadata.name == victim), None)
        return pod is not None and pod.status.container_statuses[0].restart_count == 1

    until("the killed container counted a restart", restarted, timeout=30)
    until("the restarted pod Ready again", lambda: _all_ready(cluster, namespace), timeout=60)
    second = _runner_pods(cluster, namespace)[victim]["containers"][0]["pid"]
    assert second != first

    old_ip = next(p.status.pod_ip for p in _pods(cluster, namespace) if p.metadata.name == victim)
    core = client.CoreV1Api(cluster.api_client)
    core.delete_namespaced_pod(victim, namespace)
    until("the deleted pod's process gone", lambda: not _simulator_alive(second), timeout=90)
    until("the deleted pod removed", lambda: victim not in _runner_pods(cluster, namespace))
    replacement = until(
        "a replacement pod Ready", lambda: _all_ready(cluster, namespace), timeout=60
    )
    assert victim not in {p.metadata.name for p in replacement}
    assert old_ip not in {p.status.pod_ip for p in replacement}, "a freed IP reused at once"


def _simulator_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"gpufleet.cli" in cmdline and b"sim" in cmdline and state != "Z"


def _prometheus(cluster: LocalCluster, query: str) -> list[dict[str, Any]]:
    url = cluster.handle.prometheus_url
    assert url is not None, "the session cluster runs without Prometheus"
    status, body = _get(f"{url}/api/v1/query?query={urllib.parse.quote(query)}")
    return list(json.loads(body)["data"]["result"]) if status == 200 else []


@pytest.mark.timeout(120)
def test_prometheus_scrapes_every_pool_pod(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _apply_pool(cluster, namespace)
    pods = until("both pods Ready", lambda: _all_ready(cluster, namespace), timeout=60)
    for pod in pods:
        name, ip = pod.metadata.name, pod.status.pod_ip
        where = f'namespace="{namespace}",pod="{name}"'
        wanted = {f"{ip}:8000", f"{ip}:9400"}  # vLLM's /metrics and the GPU metrics

        def up(where: str = where, wanted: set[str] = wanted) -> set[str]:
            found = {r["metric"]["instance"] for r in _prometheus(cluster, f"up{{{where}}}")
                     if r["value"][1] == "1"}  # fmt: skip
            return found if found >= wanted else set()

        until(f"up{{pod={name}}} == 1 on both ports", up, timeout=30)
        running = until(f"vllm:num_requests_running for {name}", lambda where=where: _prometheus(
            cluster, f"vllm:num_requests_running{{{where}}}"), timeout=30)  # fmt: skip
        assert running[0]["metric"]["pod_ip"] == ip
        until(f"DCGM metrics for {name}", lambda where=where: _prometheus(
            cluster, f"DCGM_FI_DEV_GPU_UTIL{{{where}}}"), timeout=30)  # fmt: skip


def _routing_policy() -> str:
    """A least-request RoutingPolicy over the pool; the operator deploys its router."""
    return json.dumps({
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RoutingPolicy",
        "metadata": {"name": POLICY},
        "spec": {"pools": [POOL], "strategy": "least-request",
                 "router": {"replicas": 1, "resources": {"requests": {"cpu": "100m"}}}},
    })  # fmt: skip


def _stats(ip: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{ip}:8080/stats", timeout=10) as resp:
        found: dict[str, Any] = json.loads(resp.read())
        return found


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()
        return int(resp.status), dict(resp.headers)


@pytest.mark.timeout(150)
def test_router_pod_runs_with_only_its_service_account_and_routes_to_two_generations(
    cluster: LocalCluster, namespace: str, operator: Operator
) -> None:
    _apply_pool(cluster, namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_routing_policy())
    until("both pool pods Ready", lambda: _all_ready(cluster, namespace), timeout=60)
    core = client.CoreV1Api(cluster.api_client)

    def router_ip() -> str | None:
        selector = ",".join(f"{k}={v}" for k, v in labels.policy_labels(POLICY).items())
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return next((p.status.pod_ip for p in pods if _ready(p)), None)

    ip = until("the router pod Ready", router_ip, timeout=60)
    until("both generations routable", lambda: len(_stats(ip)["backends"]) == 2, timeout=30)
    for _ in range(6):
        body = {"model": SERVED, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 8}  # fmt: skip
        status, _headers = _post(f"http://{ip}:8080/v1/chat/completions", body)
        assert status == 200
    served = {g for g, row in _stats(ip)["generations"].items() if row["requests"]}
    assert served == set(GENERATIONS.values()), "least-request used both generations"
    # The process holds a token of its own ServiceAccount, bound by the Role the operator
    # rendered: it may list pods, and may not read Secrets.
    router = labels.router_name(POLICY)
    (folder,) = (cluster.handle.layout.root / twin.PODS_DIR).glob(f"{namespace}_{router}-*")
    denied = cluster.kubectl("--kubeconfig", str(folder / "kubeconfig"), "get", "secrets",
                             "-n", namespace, check=False)  # fmt: skip
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    allowed = cluster.kubectl("--kubeconfig", str(folder / "kubeconfig"), "get", "pods",
                              "-n", namespace)  # fmt: skip
    assert router in allowed.stdout


def _vllm_deployment(replicas: int) -> dict[str, Any]:
    container = {
        "name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "command": ["vllm", "serve"],
        "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192"],
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 2},
    }  # fmt: skip
    return {
        "metadata": {"name": "sims"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "sims"}},
            "template": {
                "metadata": {"labels": {"app": "sims"}},
                "spec": {"containers": [container],
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
            },
        },
    }  # fmt: skip


@pytest.mark.timeout(150)
def test_down_leaves_no_process_even_after_the_runner_was_killed(tmp_path: Path) -> None:
    from gpufleet.devcluster import cluster as clusters
    from gpufleet.devcluster import nodes, processes

    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text("nodeGroups:\n- {name: h100, count: 1, gpu: H100-80GB}\n")
    name = f"twin-down-{os.getpid()}"
    handle = clusters.up(name, fleet_file=str(fleet_file), prometheus=False, load_seconds=0,
                         progress=lambda _m: None)  # fmt: skip
    try:
        with nodes.api_client(handle.kubeconfig) as api:
            client.AppsV1Api(api).create_namespaced_deployment("default", _vllm_deployment(2))
        assert handle.ports.pod_runner is not None
        url = twin.pods_url(handle.ports.pod_runner)

        def pids() -> list[int]:
            found = json.loads(_get(url)[1] or "[]")
            out = [c["pid"] for p in found for c in p["containers"] if c["state"] == "ready"]
            return out if len(out) == 2 else []

        sims = until("two simulators serving", pids, timeout=60)
        runner = handle.proc("pod-runner")
        os.kill(runner.pid, signal.SIGKILL)
        until("the runner gone", lambda: not processes.alive(runner), timeout=10)
        assert all(_simulator_alive(pid) for pid in sims), "pods outlive a killed runner"
    finally:
        clusters.down(name, progress=lambda _m: None)
    assert not [pid for pid in sims if _simulator_alive(pid)], "down left pod processes"
    assert clusters.load(name) is None


@pytest.mark.timeout(90)
def test_a_missing_secret_holds_the_container_until_it_exists(
    cluster: LocalCluster, namespace: str
) -> None:
    body = _vllm_deployment(1)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}
    ]
    client.AppsV1Api(cluster.api_client).create_namespaced_deployment(namespace, body)

    def waiting_reason() -> str:
        pods = client.CoreV1Api(cluster.api_client).list_namespaced_pod(namespace).items
        statuses = [s for p in pods for s in p.status.container_statuses or []]
        waiting = [s.state.waiting for s in statuses if s.state and s.state.waiting]
        return f"{waiting[0].reason}: {waiting[0].message}" if waiting else ""

    reason = until("the container held for its Secret", waiting_reason, timeout=30)
    assert reason.startswith("CreateContainerConfigError") and "'hub'" in reason
    client.CoreV1Api(cluster.api_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "hub"}, "stringData": {"token": "t"}}
    )

    def ready() -> bool:
        pods = client.CoreV1Api(cluster.api_client).list_namespaced_pod(namespace).items
        return bool(pods) and all(_ready(p) for p in pods)

    until("the pod Ready once the Secret exists", ready, timeout=45)
