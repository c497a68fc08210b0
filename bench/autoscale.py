"""gpufleet's autoscaler against one HPA-like controller per Deployment, on the twin.

One ModelPool (Llama 3.1 8B, with a small KV cache so that load shows in KV-cache
usage) on three generations of the default twin fleet, behind an operator-rendered
router (least-request). The same trace runs twice, time-compressed by the cluster's
simulator speed (``gpufleet dev-cluster up --sim-speed 10``), each run in a fresh
namespace with its own operator:

- ``gpufleet``: ``autoscaling.mode: gpufleet`` — one decision per pool every 15 s
  (simulated), the cheapest per token grown first, the others at ``minReplicas: 0``.
- ``hpa``: ``mode: external``, and here one HPA-like controller per Deployment, every
  15 s: ``ceil(ready x mean KV-cache usage / 0.7)`` (10 % tolerance, ``minReplicas`` 1 as
  an HPA needs), with the same behaviour through ``gpufleet.scaling.behaviour``
  (stabilisation windows, pod rate limits) so only the decision differs.

Both use the HPA defaults (up: 60 s window, 2 pods per 120 s; down:
300 s window, 1 pod per 300 s; all simulated, i.e. divided by the speed in wall time).
The trace (simulated seconds): a base rate, a step at 300 s, then a slow wave. GPU-$
is integrated from the pods bound to nodes (TP x price per GPU-hour, simulated time);
SLO attainment per class uses the loadgen SLOs scaled by the speed. The time from the
step to the first new Ready replica is reported (target: cold start + 10 s).

    .venv/bin/python bench/autoscale.py --name gpufleet --peak 3

``--up-window`` sets both arms' scale-up window (0: react at the next pass, which the
HPA's own default does); ``--ttft-target`` gives gpufleet's pool a ``targetTtftSeconds``
(simulated seconds) the baseline has no equivalent of.

Prints a table and writes ``bench/out/autoscale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

from gpufleet.controller import observe
from gpufleet.controller.autoscaling import scalinginputs
from gpufleet.devcluster import build, nodes
from gpufleet.devcluster import cluster as clusters
from gpufleet.loadgen import client as loadclient
from gpufleet.loadgen import report, trace
from gpufleet.promquery.client import PrometheusReader
from gpufleet.scaling import behaviour, model

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GROUP, VERSION = "gpufleet.io", "v1alpha1"
SERVED = "llama-3.1-8b-instruct"
POOL, POLICY = "bench", "bench"
# $/GPU-hour, typical on-demand cloud prices; gpuMemoryUtilization leaves ~8k tokens of
# KV cache beside the 16 GB of weights and vLLM's runtime overhead on each.
VARIANTS = {
    "h100": {"gpu": "H100-80GB", "costPerGpuHour": 3.0, "gpuMemoryUtilization": 0.245},
    "a100": {"gpu": "A100-80GB", "costPerGpuHour": 1.6, "gpuMemoryUtilization": 0.245},
    "l40s": {"gpu": "L40S", "costPerGpuHour": 0.9, "gpuMemoryUtilization": 0.43},
}
SELECTOR = f"gpufleet.io/pool={POOL}"
ROUTERS = "gpufleet.io/routing-policy"
PRICES = {name: float(str(v["costPerGpuHour"])) for name, v in VARIANTS.items()}
KV_TARGET = 0.7
PERIOD_S = 15.0  # simulated, as an HPA's sync period


def _behaviour(speed: float, up_window_s: float = 60) -> dict[str, int]:
    """The HPA defaults (``up_window_s`` aside), simulated seconds compressed to wall
    seconds."""

    def s(x: float) -> int:
        return max(1, round(x / speed))

    return {"scaleUpStabilizationSeconds": round(up_window_s / speed), "scaleUpPods": 2,
            "scaleUpPeriodSeconds": s(120), "scaleDownStabilizationSeconds": s(300),
            "scaleDownPods": 1, "scaleDownPeriodSeconds": s(300),
            "coldStartSeconds": s(60), "scaleToZeroAfterSeconds": s(600)}  # fmt: skip


def _pool(arm: str, speed: float, tuned: dict[str, Any] | None = None,
          up_window_s: float = 60) -> dict[str, Any]:  # fmt: skip
    """The pool of one arm; ``tuned`` adds gpufleet's own autoscaling settings."""
    floor = {"a100": 1} if arm == "gpufleet" else {}
    variants = [{"name": n, "minReplicas": floor.get(n, 0 if arm == "gpufleet" else 1),
                 "maxReplicas": 4} | v for n, v in VARIANTS.items()]  # fmt: skip
    autoscaling = {"mode": "gpufleet" if arm == "gpufleet" else "external",
                   "targetKvCacheUsage": KV_TARGET} | _behaviour(speed, up_window_s)  # fmt: skip
    if arm == "gpufleet":
        autoscaling |= tuned or {}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelPool", "metadata": {"name": POOL},
            "spec": {"model": {"name": SERVED, "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
                               "catalogName": "llama-3.1-8b", "maxModelLen": 2048},
                     "variants": variants, "autoscaling": autoscaling}}  # fmt: skip


def _policy() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RoutingPolicy",
            "metadata": {"name": POLICY},
            "spec": {"pools": [POOL], "strategy": "least-request",
                     "router": {"replicas": 1,
                                "resources": {"requests": {"cpu": "100m"}}}}}  # fmt: skip


def rate(t: float, *, base: float, peak: float) -> float:
    """Requests per simulated second: base, a step to peak at 300 s for 600 s, then a
    slow wave between base and peak with a 900 s period."""
    if t < 300:
        return base
    if t < 900:
        return peak
    return base + (peak - base) * (1 - math.cos(2 * math.pi * (t - 900) / 900)) / 2


def make_trace(seconds: float, *, base: float, peak: float, seed: int) -> trace.Trace:
    """A Poisson trace at ``peak`` thinned to ``rate(t)``; prompts and outputs clipped
    to fit the 2048-token context."""
    spec = trace.TraceSpec(seed=seed, requests=int(seconds * peak * 1.2) + 10, rate=peak,
                           session_share=0.0, batch_share=0.2)  # fmt: skip
    rng = random.Random(seed)
    kept = [
        dataclasses.replace(r, input_tokens=min(r.input_tokens, 800),
                            output_tokens=min(max(4 * r.output_tokens, 64), 600))
        for r in trace.generate(spec).requests
        if r.at_s < seconds and rng.random() < rate(r.at_s, base=base, peak=peak) / peak
    ]  # fmt: skip
    return trace.Trace(spec, tuple(dataclasses.replace(r, index=i) for i, r in enumerate(kept)))


def _plain(api: client.ApiClient, obj: object) -> dict[str, Any]:
    """A client model as the API server's JSON (camelCase)."""
    plain: dict[str, Any] = api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return plain


class Fleet:
    """Reads the pool's pods and Deployments; integrates GPU-$ over time."""

    def __init__(self, api: client.ApiClient, namespace: str, speed: float) -> None:
        self.api, self.namespace, self.speed = api, namespace, speed
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.dollars = 0.0
        self.timeline: list[tuple[float, dict[str, int]]] = []
        # The autoscaler's (or nobody's) stated reasons, each change once.
        self.reasons: list[tuple[float, dict[str, str]]] = []

    def pods(self) -> list[dict[str, Any]]:
        found = self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
        return [_plain(self.api, p) for p in found.items]

    def sample(self, dt_wall: float, at: float) -> None:
        bound: dict[str, int] = {}
        ready: dict[str, int] = {}
        for pod in self.pods():
            if pod["metadata"].get("deletionTimestamp") or not pod["spec"].get("nodeName"):
                continue
            variant = pod["metadata"]["labels"].get("gpufleet.io/variant", "")
            limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
            bound[variant] = bound.get(variant, 0) + int(limits.get("nvidia.com/gpu", 0))
            ready[variant] = ready.get(variant, 0) + int(observe.pod(pod).ready)
        hours = dt_wall * self.speed / 3600
        self.dollars += sum(g * PRICES[v] * hours for v, g in bound.items())
        self.timeline.append((at, ready))

    def note_reasons(self, at: float) -> None:
        custom = client.CustomObjectsApi(self.api)
        pool: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "modelpools", POOL
        )
        rows = (pool.get("status") or {}).get("variants") or []
        said = {r["name"]: str(r.get("scalingReason", "")) for r in rows if r.get("name")}
        if said and (not self.reasons or self.reasons[-1][1] != said):
            self.reasons.append((at, said))

    def replicas(self) -> dict[str, int]:
        found = self.apps.list_namespaced_deployment(self.namespace, label_selector=SELECTOR)
        deployments = [_plain(self.api, d) for d in found.items]
        return {d["metadata"]["labels"]["gpufleet.io/variant"]: d["spec"].get("replicas", 0)
                for d in deployments}  # fmt: skip

    def scale(self, variant: str, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(
            f"{POOL}-{variant}", self.namespace, {"spec": {"replicas": replicas}}
        )


async def sampler(fleet: Fleet, stop: asyncio.Event, started: float) -> None:
    last, ticks = time.monotonic(), 0
    while not stop.is_set():
        await asyncio.sleep(0.5)
        now = time.monotonic()
        await asyncio.to_thread(fleet.sample, now - last, now - started)
        last, ticks = now, ticks + 1
        if ticks % 4 == 0:
            await asyncio.to_thread(fleet.note_reasons, now - started)


async def hpa(fleet: Fleet, prom: PrometheusReader, stop: asyncio.Event, speed: float,
              up_window_s: float) -> None:  # fmt: skip
    """One HPA-like controller per Deployment (each with its own history)."""
    policy = model.Policy(up_window_s=up_window_s / speed, up_period_s=120 / speed,
                          down_window_s=300 / speed, down_period_s=300 / speed)  # fmt: skip
    histories = {v: model.History() for v in VARIANTS}
    queries = scalinginputs.queries()
    while not stop.is_set():
        await asyncio.sleep(PERIOD_S / speed)
        pods = [observe.pod(p) for p in await asyncio.to_thread(fleet.pods)]
        try:
            results = await prom.query([queries.kv_usage])
        except Exception:  # a missed sync, as an HPA without metrics skips one
            continue
        signals = scalinginputs.signals(results, pods, queries)
        current = await asyncio.to_thread(fleet.replicas)
        now = time.monotonic()
        for variant, have in current.items():
            ready = sum(1 for p in pods if p.variant == variant and p.ready)
            s = signals.get(variant)
            if s is None or ready == 0:
                continue
            ratio = s.kv_usage / KV_TARGET
            want = have if abs(ratio - 1) <= 0.1 else math.ceil(ready * ratio)
            want = min(max(want, 1), 4)
            h = histories[variant]
            stable = behaviour.stabilise(
                {variant: want}, {variant: have}, h, now=now, policy=policy
            )
            up = behaviour.budget(h, now=now, pods=2, period_s=policy.up_period_s, up=True)
            down = behaviour.budget(h, now=now, pods=1, period_s=policy.down_period_s, up=False)
            final = behaviour.limit(stable, {variant: have}, [variant], up_budget=up,
                                    down_budget=down)[variant]  # fmt: skip
            events = [model.ScaleEvent(now, variant, final - have)] if final != have else []
            histories[variant] = behaviour.remember(
                h, now=now, raw={variant: want}, events=events, active=True,
                keep_s=policy.down_window_s)  # fmt: skip
            if final != have:
                await asyncio.to_thread(fleet.scale, variant, final)


def _kubectl(handle: clusters.Cluster, *args: str, stdin: str = "") -> None:
    kubectl = [str(build.binary_path("kubectl")), f"--kubeconfig={handle.kubeconfig}"]
    done = subprocess.run([*kubectl, *args], input=stdin, text=True, capture_output=True)
    if done.returncode:
        raise SystemExit(f"kubectl {' '.join(args)}: {done.stderr.strip()}")


def _wait(what: str, check: Any, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


async def run_arm(arm: str, handle: clusters.Cluster, api: client.ApiClient,
                  loaded: trace.Trace, speed: float, log_dir: Path,
                  tuned: dict[str, Any], up_window_s: float) -> dict[str, Any]:  # fmt: skip
    namespace = f"bench-as-{arm}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
    _wait("the namespace's default ServiceAccount", lambda: any(
        _plain(api, sa)["metadata"]["name"] == "default"
        for sa in core.list_namespaced_service_account(namespace).items))  # fmt: skip
    log = (log_dir / f"autoscale-{arm}-operator.log").open("wb")
    argv = [str(BIN / "gpufleet"), "operator", "--kubeconfig", str(handle.kubeconfig),
            "-n", namespace, "--liveness", "none", "--resync-seconds", "5",
            "--router-discovery", "pods",
            "--autoscale-seconds", f"{PERIOD_S / speed:g}",
            "--prometheus-url", handle.prometheus_url or "",
            "--allow-local-prometheus"]  # fmt: skip
    operator = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    fleet = Fleet(api, namespace, speed)
    try:
        for body in (_pool(arm, speed, tuned, up_window_s), _policy()):
            _kubectl(handle, "apply", "-n", namespace, "-f", "-", stdin=json.dumps(body))
        router = _wait("the router Ready", lambda: next(
            (p["status"]["podIP"] for p in (_plain(api, x) for x in
             core.list_namespaced_pod(namespace, label_selector=ROUTERS).items)
             if observe.pod(p).ready), None))  # fmt: skip
        floor = sum(1 for v in _pool(arm, speed)["spec"]["variants"] if v["minReplicas"])
        _wait("the minimum replicas Ready", lambda: sum(
            observe.pod(p).ready for p in fleet.pods()) >= floor)  # fmt: skip
        stop, started = asyncio.Event(), time.monotonic()
        loops = [asyncio.create_task(sampler(fleet, stop, started))]
        prom = PrometheusReader(handle.prometheus_url or "", verify=True, timeout_s=5)
        if arm == "hpa":
            loops.append(asyncio.create_task(hpa(fleet, prom, stop, speed, up_window_s)))
        results, duration = await loadclient.replay(
            loaded, target=f"http://{router}:8080", model=SERVED, concurrency=512,
            time_scale=1 / speed, timeout_s=120)  # fmt: skip
        stop.set()
        await asyncio.gather(*loops)
        prom.close()
    finally:
        operator.terminate()
        operator.wait(timeout=20)
        log.close()
        core.delete_namespace(namespace)
    return _summary(arm, fleet, results, duration, loaded, speed)


def _step_to_ready(fleet: Fleet, speed: float) -> float | None:
    """Simulated seconds from the step (300 s) to the first extra Ready replica."""
    step_wall = 300 / speed
    before = [sum(r.values()) for at, r in fleet.timeline if at <= step_wall]
    base = before[-1] if before else 0
    after = [at for at, r in fleet.timeline if at > step_wall and sum(r.values()) > base]
    return (after[0] - step_wall) * speed if after else None


def _attainment(summary: dict[str, object]) -> dict[str, float]:
    classes = summary["classes"]
    assert isinstance(classes, dict)
    return {k: round(float(v["goodput_share"]), 3) for k, v in classes.items()}


def _summary(arm: str, fleet: Fleet, results: list[report.Result], duration: float,
             loaded: trace.Trace, speed: float) -> dict[str, Any]:  # fmt: skip
    slos = {k: trace.Slo(ttft_s=s.ttft_s / speed, tpot_s=s.tpot_s / speed, e2e_s=s.e2e_s / speed)
            for k, s in loaded.slos.items()}  # fmt: skip
    summary = report.summarize(results, slos=slos, duration_s=duration)
    peak = {v: max((r.get(v, 0) for _, r in fleet.timeline), default=0) for v in VARIANTS}
    return {"arm": arm, "gpu_dollars": round(fleet.dollars, 3), "requests": summary["requests"],
            "succeeded": summary["succeeded"], "errors": summary["errors"],
            "slo_attainment": _attainment(summary),
            "peak_ready": peak, "step_to_ready_s": _step_to_ready(fleet, speed),
            "timeline": [(round(at * speed), r) for at, r in fleet.timeline[::10]],
            "reasons": [(round(at * speed), r) for at, r in fleet.reasons]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--name", default=clusters.DEFAULT_NAME, help="a running dev cluster")
    parser.add_argument("--seconds", type=float, default=1800, help="trace length, simulated")
    parser.add_argument("--base", type=float, default=0.4, help="req/s (simulated) at rest")
    parser.add_argument("--peak", type=float, default=2.0, help="req/s (simulated) at the step")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--arms", default="gpufleet,hpa")
    parser.add_argument(
        "--ttft-target",
        type=float,
        default=None,
        help="gpufleet's targetTtftSeconds, simulated s (default: none)",
    )
    parser.add_argument(
        "--up-window",
        type=float,
        default=60.0,
        help="scale-up stabilisation window of both arms, simulated s",
    )
    args = parser.parse_args()
    handle = clusters.load(args.name)
    if handle is None or not clusters.is_running(handle) or not handle.prometheus_url:
        raise SystemExit(f"cluster {args.name!r} is not running with Prometheus")
    speed = handle.sim_speed
    _kubectl(handle, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    _kubectl(handle, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    tuned: dict[str, Any] = {}
    if args.ttft_target is not None:  # the simulators observe latency in wall seconds
        tuned["targetTtftSeconds"] = args.ttft_target / speed
    loaded = make_trace(args.seconds, base=args.base, peak=args.peak, seed=args.seed)
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    arms = []
    with nodes.api_client(handle.kubeconfig) as api:
        for arm in args.arms.split(","):
            print(f"{arm}: {len(loaded.requests)} requests over {args.seconds:.0f} s simulated "
                  f"({args.seconds / speed:.0f} s wall)", flush=True)  # fmt: skip
            arms.append(
                asyncio.run(
                    run_arm(arm, handle, api, loaded, speed, out_dir, tuned, args.up_window)
                )
            )
            shown = {k: v for k, v in arms[-1].items() if k not in ("timeline", "reasons")}
            print(json.dumps(shown), flush=True)
    if len(arms) == 2 and arms[1]["gpu_dollars"]:
        print(f"GPU-$ ratio gpufleet/hpa: {arms[0]['gpu_dollars'] / arms[1]['gpu_dollars']:.2f}")
    document = {"speed": speed, "peak": args.peak, "up_window_s": args.up_window,
                "gpufleet_settings": tuned, "arms": arms}  # fmt: skip
    (out_dir / "autoscale.json").write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
