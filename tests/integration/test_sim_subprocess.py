"""``gpufleet sim`` and ``gpufleet sim fleet`` as real processes, with real clients."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gpufleet import ports
from gpufleet.sim import replica

pytestmark = pytest.mark.slow
MODEL = "llama-3.1-8b"


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_ok(url: str, proc: subprocess.Popen[Any]) -> None:
    for _ in range(200):
        assert proc.poll() is None, "simulator exited"
        with contextlib.suppress(OSError):
            if _get(url) == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")


def _wait_healthy(url: str, proc: subprocess.Popen[Any]) -> None:
    _wait_ok(url + "/health", proc)


@pytest.fixture
def sim() -> Iterator[tuple[str, str]]:
    port, metrics_port = ports.free_port(), ports.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "sim", "--gpu", "H100-80GB", "--model", MODEL,
         "--max-model-len", "8192", "--port", str(port), "--metrics-port", str(metrics_port),
         "--speed", "20", "--load-seconds", "0"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, f"http://127.0.0.1:{metrics_port}"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def _start(*flags: str) -> tuple[subprocess.Popen[str], int, int]:
    port, metrics_port = ports.free_port(), ports.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "sim", "--gpu", "H100-80GB", "--model", MODEL,
         "--max-model-len", "8192", "--port", str(port), "--metrics-port", str(metrics_port),
         *flags],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, port, metrics_port


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_api_refuses_connections_while_the_model_loads() -> None:
    # 40 simulated seconds at speed 20: 2 s of wall time.
    proc, port, metrics_port = _start("--speed", "20", "--load-seconds", "40")
    with proc:
        assert proc.stdout is not None
        try:
            assert "loading llama-3.1-8b for 40.0 s" in proc.stdout.readline()
            _wait_ok(f"http://127.0.0.1:{metrics_port}/metrics", proc)
            assert _refused(port)  # the metrics port serves, the API does not yet
            _wait_healthy(f"http://127.0.0.1:{port}", proc)
            assert "serving llama-3.1-8b on http://127.0.0.1:" in proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGTERM)
    assert proc.returncode == 0


def test_sigterm_during_the_default_load_exits_cleanly() -> None:
    expected = replica.build(
        replica.ReplicaSpec(model=MODEL, gpu="H100-80GB", max_model_len=8192)
    ).load_seconds
    proc, port, _ = _start()  # speed 1: the computed load lasts that long in wall time
    with proc:
        assert proc.stdout is not None
        assert f"loading llama-3.1-8b for {expected:.1f} s" in proc.stdout.readline()
        assert _refused(port)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert rest == ""  # it never served
    assert _refused(port)


def test_openai_client_streaming_and_not(sim: tuple[str, str]) -> None:
    url, _ = sim
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
    models = [m.id for m in client.models.list()]
    assert models == [MODEL]
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=6
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    completion = client.completions.create(model=MODEL, prompt="abc", max_tokens=3)
    assert len(completion.choices[0].text.split()) == 3
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="abc", max_tokens=3)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="abc", max_tokens=100_000)


def test_refuse_connections_and_recover(sim: tuple[str, str]) -> None:
    url, admin = sim
    request = urllib.request.Request(
        admin + "/admin/faults", data=b'{"refuse_connections": true}', method="POST"
    )
    with urllib.request.urlopen(request, timeout=2):
        pass
    time.sleep(0.3)
    with pytest.raises(urllib.error.URLError) as info:
        _get(url + "/health")
    assert isinstance(info.value.reason, ConnectionRefusedError)
    request = urllib.request.Request(admin + "/admin/faults", method="DELETE")
    with urllib.request.urlopen(request, timeout=2):
        pass
    time.sleep(0.3)
    assert _get(url + "/health") == 200


def test_fleet_writes_backends_and_stops_children(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump({
        "model": MODEL, "basePort": 0, "maxModelLen": 8192,
        "replicas": [{"gpu": "B200", "count": 1}, {"gpu": "A100-40GB", "count": 2}],
    }))  # fmt: skip
    out = tmp_path / "backends.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "sim", "fleet", "--fleet", str(fleet_file),
         "--out", str(out)],
    )  # fmt: skip
    try:
        for _ in range(300):
            if out.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        backends = yaml.safe_load(out.read_text())["backends"]
        assert [b["gpu"] for b in backends] == ["B200", "A100-40GB", "A100-40GB"]
        assert all(b["model"] == MODEL and b["tensorParallelSize"] == 1 for b in backends)
        assert all(_get(b["url"] + "/health") == 200 for b in backends)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    for backend in backends:
        with pytest.raises(urllib.error.URLError):
            _get(backend["url"] + "/health")


def test_fleet_rejects_an_infeasible_replica(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump({
        "model": "llama-3.1-70b", "replicas": [{"gpu": "A100-40GB", "tensorParallelSize": 1}],
    }))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "gpufleet.cli", "sim", "fleet", "--fleet", str(fleet_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "llama-3.1-70b" in result.stderr
