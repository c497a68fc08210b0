"""gpufleet's images, built here and run as the pod specs run them (podman with runc, a
read-only root, no writable path at all, the pods' uids): the operator from its image
reconciles a pool on the twin and deploys its router, the router from its image streams
an answer, the load generator in it runs without matplotlib, and the worker image,
built on a stand-in for vLLM's, stops at its GPU check with its documented exit codes."""

from __future__ import annotations

import functools
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from gpufleet.devcluster import imagespec
from gpufleet.ports import free_port
from gpufleet.worker import command as worker
from tests.conftest import LocalCluster
from tests.integration import image_harness, operator_harness
from tests.integration.image_harness import container, wait_for
from tests.router.peers import MODEL, router_config, start_sim

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def built() -> list[imagespec.Image]:
    return image_harness.built()


ROOT = Path(__file__).parents[2]
POOL_FILE = ROOT / "examples" / "modelpool-llama-3.1-70b.yaml"
POLICY_FILE = ROOT / "examples" / "demo" / "routingpolicy.yaml"


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


def _post(url: str, body: dict[str, object]) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return bytes(response.read())


def _readable(path: Path, text: str) -> Path:
    """A file the container's uid can read through a bind mount."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_the_router_from_its_image_streams_an_answer(built: object, tmp_path: Path) -> None:
    sim = start_sim("H100-80GB")
    try:
        config = _readable(tmp_path / "router.yaml", yaml.safe_dump(router_config([sim.backend()])))
        port = free_port()
        args = ["router", "--config", "/etc/gpufleet/router.yaml", "--port", str(port)]
        mounts = [(config, "/etc/gpufleet/router.yaml")]
        with container(imagespec.GPUFLEET.reference, args, log=tmp_path / "router.log",
                       mounts=mounts) as router:  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            wait_for("the router's /readyz", router, lambda: _get(url + "/readyz") == 200,
                     timeout=60)  # fmt: skip
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 12,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            events = [ln[6:] for ln in _post(url + "/v1/chat/completions", body).splitlines()
                      if ln.startswith(b"data: ")]  # fmt: skip
            out = tmp_path / "load"
            load = imagespec.run_argv(
                imagespec.GPUFLEET.reference,
                ["bench", "load", "--target", url, "--model", MODEL, "--requests", "4",
                 "--rate", "20", "--quiet", "--out-dir", "/out"],
                user="65532:65532", tmpfs=["/out"],
            )  # fmt: skip
            loaded = _run(load)
    finally:
        sim.stop()
    assert events[-1] == b"[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 12
    assert sum(1 for e in events[:-2] if json.loads(e)["choices"][0]["delta"].get("content"))
    # The image leaves matplotlib out: the load generator says so instead of failing.
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "no chart.png: matplotlib is not installed" in loaded.stdout
    assert not out.exists()


@pytest.mark.timeout(300)
def test_the_operator_from_its_image_makes_a_pool_ready_and_deploys_its_router(
    built: object, crds: list[str], cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    # The operator's ServiceAccount (deploy/rbac), its CA mounted where uid 65532 can
    # read it (the host path runs through /root).
    made = operator_harness.service_account_kubeconfig(
        cluster.handle, cluster.api_client, tmp_path / "sa-kubeconfig"
    )
    config = yaml.safe_load(made.read_text(encoding="utf-8"))
    config["clusters"][0]["cluster"]["certificate-authority"] = "/etc/gpufleet/ca.crt"
    kubeconfig = _readable(tmp_path / "kubeconfig", yaml.safe_dump(config))
    ca = _readable(tmp_path / "ca.crt", cluster.handle.layout.pki.ca_cert.read_text())
    health = free_port()
    args = ["operator", "--kubeconfig", "/etc/gpufleet/kubeconfig", "-n", namespace,
            "--router-discovery", "pods", "--resync-seconds", "10", "--allow-local-prometheus",
            "--liveness", f"http://127.0.0.1:{health}/healthz"]  # fmt: skip
    mounts = [(kubeconfig, "/etc/gpufleet/kubeconfig"), (ca, "/etc/gpufleet/ca.crt")]
    with container(imagespec.GPUFLEET.reference, args, log=tmp_path / "operator.log",
                   mounts=mounts) as operator:  # fmt: skip
        wait_for("the operator's liveness endpoint", operator,
                 lambda: _get(f"http://127.0.0.1:{health}/healthz") == 200, timeout=60)  # fmt: skip
        cluster.kubectl("create", "secret", "generic", "hf-token", "-n", namespace,
                        "--from-literal=token=hf_test")  # fmt: skip
        cluster.kubectl("apply", "-n", namespace, "-f", str(POOL_FILE))
        custom = client.CustomObjectsApi(cluster.api_client)
        wait_for("the example pool Ready", operator,
                 lambda: _ready(custom, namespace, "llama-70b"), timeout=150)  # fmt: skip
        prometheus = f"http://127.0.0.1:{cluster.handle.ports.prometheus}"
        policy = POLICY_FILE.read_text(encoding="utf-8").replace("${PROMETHEUS_URL}", prometheus)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=policy)
        core = client.CoreV1Api(cluster.api_client)
        router_ip = functools.partial(operator_harness.ready_router_ip, core, namespace)
        wait_for("the router pod Ready", operator, router_ip, timeout=90)
        ip = router_ip()
        body = {"model": "llama-large", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4}  # fmt: skip
        answer = json.loads(_post(f"http://{ip}:8080/v1/chat/completions", body))
    assert answer["usage"]["completion_tokens"] == 4
    assert "getpwuid" not in operator.text()


def _ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    pool = custom.get_namespaced_custom_object(
        operator_harness.GROUP, operator_harness.VERSION, namespace, operator_harness.PLURAL, name
    )
    return operator_harness.condition(pool, "Ready").get("status") == "True"


@pytest.mark.parametrize(
    ("env", "code", "says"),
    [
        ({"GPUFLEET_GPU_GENERATION": "H100-80GB"}, worker.EXIT_NVML, "NVML could not start"),
        ({}, worker.EXIT_CLAIM, "the pod names no GPU generation"),
    ],
    ids=["no-nvml", "no-claim"],
)
def test_the_worker_image_stops_at_its_gpu_check(
    built: object, env: dict[str, str], code: int, says: str
) -> None:
    argv = imagespec.run_argv(imagespec.WORKER.reference, ["--model", "m", "-tp", "1"],
                              user="1000:1000", env=sorted(env.items()))  # fmt: skip
    done = _run(argv)
    assert done.returncode == code, done.stdout + done.stderr
    assert says in done.stderr


@pytest.mark.parametrize(
    ("image", "user"), [(imagespec.GPUFLEET, "65532:65532"), (imagespec.WORKER, "1000:1000")],
    ids=["gpufleet", "worker"],
)  # fmt: skip
def test_the_pods_uid_has_a_name_and_no_installer(
    built: object, image: imagespec.Image, user: str
) -> None:
    script = (
        "import getpass, importlib.util, os, pwd; "
        "print(getpass.getuser(), pwd.getpwuid(os.getuid()).pw_name, "
        "[m for m in ('pip', 'setuptools', 'matplotlib') if importlib.util.find_spec(m)])"
    )
    argv = imagespec.run_argv(image.reference, ["-c", script], user=user,
                              entrypoint="/opt/gpufleet/bin/python")  # fmt: skip
    done = _run(argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gpufleet", "gpufleet", "[]"]
