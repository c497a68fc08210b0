"""The twin's pure decisions: what runs for a container, its env, probes, files, status."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gpufleet.devcluster import podstatus, workloads

POD_IP = "127.80.0.7"


def _pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                     "labels": {"app": "x"}, "annotations": {"gpufleet.io/model": "llama-3.1-8b"}},
        "spec": {"node_name": "kwok-h100-0", "service_account_name": "sa",
                 "containers": list(containers), **spec},
        "status": {},
    }  # fmt: skip


def _ctx(**kw: Any) -> workloads.PodContext:
    return workloads.PodContext(pod_ip=POD_IP, node_gpu="H100-80GB", **kw)


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("gpufleet", "gpufleet"),
        ("ghcr.io/gpufleet/gpufleet:0.1.0", "gpufleet"),
        ("registry:5000/team/gpufleet@sha256:abc", "gpufleet"),
        ("vllm/vllm-openai:v0.11.0", "vllm-openai"),
        ("busybox", "busybox"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert workloads.image_repository(image) == repository


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--host=$(POD_IP)", f"--host={POD_IP}"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$$(POD_IP)", "$(POD_IP)"),
        ("plain", "plain"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert workloads.expand(text, {"POD_IP": POD_IP}) == expected


def test_env_resolves_values_refs_and_fields_in_order() -> None:
    container = {"name": "c", "env": [
        {"name": "POD_IP", "value_from": {"field_ref": {"field_path": "status.podIP"}}},
        {"name": "URL", "value": "http://$(POD_IP):8080"},
        {"name": "KEY", "value_from": {"secret_key_ref": {"name": "s", "key": "k"}}},
        {"name": "MODE", "value_from": {"config_map_key_ref": {"name": "cm", "key": "mode"}}},
        {"name": "NS", "value_from": {"field_ref": {"field_path": "metadata.namespace"}}},
        {"name": "APP", "value_from": {"field_ref": {"field_path": "metadata.labels['app']"}}},
        {"name": "OPT", "value_from": {"secret_key_ref": {"name": "nope", "key": "k",
                                                          "optional": True}}},
    ]}  # fmt: skip
    ctx = _ctx(secrets={"s": {"k": "sk-1"}}, configmaps={"cm": {"mode": "fast"}})
    env = dict(workloads.resolve_env(container, _pod(container), ctx))
    assert env == {"POD_IP": POD_IP, "URL": f"http://{POD_IP}:8080", "KEY": "sk-1",
                   "MODE": "fast", "NS": "ns", "APP": "x"}  # fmt: skip


def test_missing_secret_key_names_it() -> None:
    container = {
        "name": "c",
        "env": [{"name": "KEY", "value_from": {"secret_key_ref": {"name": "tenants", "key": "a"}}}],
    }
    with pytest.raises(workloads.WorkloadError, match="Secret 'tenants' has no key 'a'"):
        workloads.resolve_env(container, _pod(container), _ctx())


def test_decode_secret() -> None:
    data = {"k": base64.b64encode(b"v").decode()}
    assert workloads.decode_secret(data) == {"k": "v"}


@pytest.mark.parametrize(
    ("container", "probe"),
    [
        ({"name": "c"}, workloads.Probe(kind="running")),
        (
            {"name": "c", "ports": [{"name": "http", "container_port": 8000}],
             "readiness_probe": {"http_get": {"path": "/health", "port": "http"},
                                 "period_seconds": 5, "failure_threshold": 3}},
            workloads.Probe(kind="http", port=8000, path="/health", period_seconds=5),
        ),
        (
            {"name": "c", "startup_probe": {"tcp_socket": {"port": 9000}}},
            workloads.Probe(kind="tcp", port=9000),
        ),
    ],
)  # fmt: skip
def test_probe_of(container: dict[str, Any], probe: workloads.Probe) -> None:
    assert workloads.probe_of(container) == probe


def test_gpufleet_container_runs_the_gpufleet_command_with_expanded_args() -> None:
    container = {
        "name": "router", "image": "ghcr.io/gpufleet/gpufleet:0.1.0",
        "command": ["gpufleet"], "args": ["router", "--host", "$(POD_IP)", "--config",
                                          "/etc/gpufleet/router.yaml"],
        "env": [{"name": "POD_IP", "value_from": {"field_ref": {"field_path": "status.podIP"}}}],
    }  # fmt: skip
    found = workloads.launch(container, _pod(container), _ctx())
    assert isinstance(found, workloads.Launch)
    assert found.kind == "gpufleet"
    assert found.args == ("router", "--host", POD_IP, "--config", "/etc/gpufleet/router.yaml")
    mounts = workloads.MountMap((("/etc/gpufleet", "/tmp/pod/volumes/config"),))
    assert workloads.mapped(found, mounts).args[-1] == "/tmp/pod/volumes/config/router.yaml"


def test_gpufleet_image_without_command_uses_its_entrypoint() -> None:
    container = {"name": "op", "image": "gpufleet:dev", "args": ["operator", "-v"]}
    found = workloads.launch(container, _pod(container), _ctx())
    assert isinstance(found, workloads.Launch) and found.args == ("operator", "-v")


def test_gpufleet_image_running_something_else_is_an_error() -> None:
    container = {"name": "sh", "image": "gpufleet:dev", "command": ["sh", "-c", "sleep 1"]}
    with pytest.raises(workloads.WorkloadError, match="not the gpufleet command"):
        workloads.launch(container, _pod(container), _ctx())


def test_other_images_are_skipped() -> None:
    container = {"name": "app", "image": "nginx:1.27", "command": ["nginx"]}
    found = workloads.launch(container, _pod(container), _ctx())
    assert found == workloads.Skipped(container="app", image="nginx:1.27",
                                      reason="not vLLM or gpufleet")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "mapped"),
    [
        ("/etc/gpufleet", "/h/config"),
        ("/etc/gpufleet/router.yaml", "/h/config/router.yaml"),
        ("--config=/etc/gpufleet/r.yaml", "--config=/h/config/r.yaml"),
        ("/etc/gpufleetx/r.yaml", "/etc/gpufleetx/r.yaml"),
        ("/etc/gpufleet/keys/a", "/h/keys/a"),
        ("router", "router"),
    ],
)
def test_mount_map(text: str, mapped: str) -> None:
    mounts = workloads.MountMap((("/etc/gpufleet", "/h/config"), ("/etc/gpufleet/keys", "/h/keys")))
    assert mounts.host_path(text) == mapped


def test_volume_files_configmap_items_secret_and_projected() -> None:
    configmaps = {"cm": {"a": "1", "b": "2"}}
    secrets = {"s": {"token": "t"}}
    kw: dict[str, Any] = {"configmaps": configmaps, "secrets": secrets}
    assert workloads.volume_files({"config_map": {"name": "cm"}}, **kw) == {"a": "1", "b": "2"}
    items = {"config_map": {"name": "cm", "items": [{"key": "b", "path": "x/b.txt"}]}}
    assert workloads.volume_files(items, **kw) == {"x/b.txt": "2"}
    assert workloads.volume_files({"secret": {"secret_name": "s"}}, **kw) == {"token": "t"}
    projected = {
        "projected": {
            "sources": [
                {"config_map": {"name": "cm"}},
                {"service_account_token": {"path": "token"}},
            ]
        }
    }
    assert workloads.volume_files(projected, **kw) == {"a": "1", "b": "2"}
    assert workloads.volume_files({"empty_dir": {}}, **kw) is None


def test_references() -> None:
    container = {
        "name": "c",
        "env": [{"name": "K", "value_from": {"secret_key_ref": {"name": "s1", "key": "k"}}}],
    }
    pod = _pod(container, volumes=[
        {"name": "v", "config_map": {"name": "cm1"}},
        {"name": "w", "projected": {"sources": [{"secret": {"name": "s2"}}]}},
    ])  # fmt: skip
    assert workloads.references(pod) == ({"cm1"}, {"s1", "s2"})


@pytest.mark.parametrize(
    ("meta", "spec", "seconds"),
    [
        ({}, {}, 30.0),
        ({}, {"termination_grace_period_seconds": 60}, 60.0),
        ({"deletion_grace_period_seconds": 0}, {"termination_grace_period_seconds": 60}, 0.0),
    ],
)
def test_grace_seconds(meta: dict[str, Any], spec: dict[str, Any], seconds: float) -> None:
    assert workloads.grace_seconds({"metadata": meta, "spec": spec}) == seconds


@pytest.mark.parametrize(("restarts", "seconds"), [(0, 1), (1, 1), (2, 2), (4, 8), (10, 30)])
def test_backoff(restarts: int, seconds: float) -> None:
    assert workloads.backoff_seconds(restarts) == seconds


def _conditions(body: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in body["conditions"]}


def test_status_ready_only_when_every_container_is() -> None:
    ready = podstatus.ContainerState("a", "img", ready=True, running_since="t0")
    loading = podstatus.ContainerState("b", "img", running_since="t0")
    body = podstatus.status(pod_ip=POD_IP, host_ip="127.0.0.1", started_at="t0", now="t1",
                            containers=[ready, loading])  # fmt: skip
    assert body["phase"] == "Running" and body["podIP"] == POD_IP
    assert _conditions(body)["Ready"] == "False"
    assert _conditions(body)["ContainersReady"] == "False"
    body = podstatus.status(pod_ip=POD_IP, host_ip="127.0.0.1", started_at="t0", now="t1",
                            containers=[ready])  # fmt: skip
    assert _conditions(body)["Ready"] == "True"


def test_status_of_a_restarted_container() -> None:
    ended = podstatus.Terminated(exit_code=137, reason="Error", finished_at="t2")
    state = podstatus.ContainerState("a", "img", waiting_reason="CrashLoopBackOff",
                                     restart_count=2, last_terminated=ended)  # fmt: skip
    out = podstatus.container_status(state)
    assert out["restartCount"] == 2 and out["started"] is False
    assert out["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert out["lastState"]["terminated"]["exitCode"] == 137


@pytest.mark.parametrize(
    ("policy", "codes", "phase"),
    [("Always", [0], "Running"), ("Never", [0], "Succeeded"), ("Never", [0, 1], "Failed")],
)
def test_phase(policy: str, codes: list[int], phase: str) -> None:
    states = [podstatus.ContainerState(f"c{i}", "img",
                                       terminated=podstatus.Terminated(code, "x", "t"))
              for i, code in enumerate(codes)]  # fmt: skip
    assert podstatus.phase(states, policy) == phase


def test_ip_allocator_never_reuses_a_freed_address_at_once() -> None:
    ips = podstatus.IpAllocator("127.80.0.0/16")
    first = ips.allocate(set())
    second = ips.allocate({first})
    assert (first, second) == ("127.80.0.2", "127.80.0.3")
    # ``first`` was freed, yet the next pod gets a new address
    assert ips.allocate({second}) == "127.80.0.4"
    assert ips.allocate({"127.80.0.5"}) == "127.80.0.6"


def test_ip_allocator_moves_past_addresses_seen_at_start_and_wraps() -> None:
    ips = podstatus.IpAllocator("127.80.0.0/29")  # .2 … .6 usable
    ips.seen("127.80.0.5")
    assert ips.allocate(set()) == "127.80.0.6"
    assert ips.allocate({"127.80.0.6"}) == "127.80.0.2"
    with pytest.raises(RuntimeError, match="no free pod IP"):
        ips.allocate({f"127.80.0.{i}" for i in range(2, 7)})


def test_vllm_container_becomes_a_simulator_at_the_pod_ip() -> None:
    container = {
        "name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "command": ["vllm", "serve"],
        "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "llama",
                 "--tensor-parallel-size", "1", "--port", "8000"],
        "ports": [{"name": "http", "container_port": 8000}],
        "readiness_probe": {"http_get": {"path": "/health", "port": "http"}},
    }  # fmt: skip
    found = workloads.launch(container, _pod(container), _ctx(speed=10.0, load_seconds=2.0))
    assert isinstance(found, workloads.Launch) and found.kind == "vllm"
    args = list(found.args)
    assert args[0] == "sim"
    for flag, value in [("--gpu", "H100-80GB"), ("--host", POD_IP), ("--port", "8000"),
                        ("--served-model-name", "llama"), ("--metrics-port", "9400"),
                        ("--speed", "10.0"), ("--load-seconds", "2.0")]:  # fmt: skip
        assert args[args.index(flag) + 1] == value
    assert found.probe == workloads.Probe(kind="http", port=8000, path="/health")


def test_vllm_container_on_a_node_without_a_gpu_is_an_error() -> None:
    container = {"name": "vllm", "image": "vllm/vllm-openai", "command": ["vllm", "serve"],
                 "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct"]}  # fmt: skip
    ctx = workloads.PodContext(pod_ip=POD_IP, node_gpu=None)
    with pytest.raises(workloads.WorkloadError, match="GPU generation"):
        workloads.launch(container, _pod(container), ctx)
