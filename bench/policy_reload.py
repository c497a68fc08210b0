"""From ``kubectl apply`` of a changed RoutingPolicy to the new config routing requests.

Runs against a cluster where the operator already runs a router for ``--policy`` (what
``make demo`` leaves behind). While a steady load of small chat requests flows through
the router (``--concurrency`` clients), it makes ``--changes`` changes to the policy,
each adding a model alias ``reload-<n>`` (and nudging a scorer weight), and times each
from the API server accepting the patch to the first request naming the new alias that
every router replica answers 200. Counts the load's failed requests during the changes
(target: none) and checks that no router pod was replaced or restarted.

Prints p50/p99/max and writes ``bench/out/policy_reload.json``. Target: p99 ≤ 5 s.

    .venv/bin/python bench/policy_reload.py --name gpufleet --policy llama-70b
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client

from gpufleet import labels
from gpufleet.devcluster import cluster as clusters
from gpufleet.devcluster import nodes, podstatus

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "gpufleet.io", "v1alpha1", "routingpolicies"


def _routers(core: client.CoreV1Api, namespace: str, policy: str) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in labels.policy_labels(policy).items())
    pods = [p.to_dict() for p in core.list_namespaced_pod(namespace, label_selector=selector).items]
    return [p for p in pods if podstatus.ready_of(p.get("status"))]


def _identity(pods: list[dict[str, Any]]) -> dict[str, int]:
    return {
        str(p["metadata"]["uid"]): sum(
            int(c.get("restart_count") or 0)
            for c in (p.get("status") or {}).get("container_statuses") or []
        )
        for p in pods
    }


def _port(pod: dict[str, Any]) -> int:
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["container_port"])
    raise SystemExit(f"router pod {pod['metadata']['name']} has no port named http")


def _body(model: str) -> bytes:
    return json.dumps({"model": model, "max_tokens": 2,
                       "messages": [{"role": "user", "content": "ping"}]}).encode()  # fmt: skip


async def _load(
    http: aiohttp.ClientSession,
    urls: list[str],
    model: str,
    stop: asyncio.Event,
    tally: dict[str, int],
) -> None:
    turn = 0
    while not stop.is_set():
        turn += 1
        url = urls[turn % len(urls)]
        try:
            async with http.post(url + "/v1/chat/completions", data=_body(model),
                                 headers={"content-type": "application/json"}) as r:  # fmt: skip
                await r.read()
                outcome = "ok" if r.status == 200 else f"status {r.status}"
                tally[outcome] = tally.get(outcome, 0) + 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally[type(exc).__name__] = tally.get(type(exc).__name__, 0) + 1


async def _serves(http: aiohttp.ClientSession, url: str, alias: str) -> bool:
    try:
        async with http.post(url + "/v1/chat/completions", data=_body(alias),
                             headers={"content-type": "application/json"}) as r:  # fmt: skip
            await r.read()
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    cluster = clusters.load(args.name)
    if cluster is None:
        raise SystemExit(f"no dev cluster {args.name!r}: run `make demo` first")
    with nodes.api_client(cluster.kubeconfig) as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        policy: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, args.namespace, PLURAL, args.policy
        )
        pods = _routers(core, args.namespace, args.policy)
        if not pods:
            raise SystemExit(f"RoutingPolicy {args.policy} has no Ready router pod")
        urls = [f"http://{p['status']['pod_ip']}:{_port(p)}" for p in pods]
        before = _identity(pods)
        base_aliases = list(policy["spec"].get("modelAliases") or [])
        model = args.model or next(iter(a["model"] for a in base_aliases), None)
        if model is None:
            raise SystemExit("--model is required when the policy has no modelAliases")
        print(f"{len(urls)} router pod(s): {', '.join(urls)}; model {model}", flush=True)
        timeout = aiohttp.ClientTimeout(total=30)
        latencies: list[float] = []
        tally: dict[str, int] = {}
        stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=timeout) as http:
            loaders = [
                asyncio.create_task(_load(http, urls, model, stop, tally))
                for _ in range(args.concurrency)
            ]
            try:
                for n in range(args.changes):
                    alias = f"reload-{n}"
                    aliases = [*base_aliases, {"name": alias, "model": model}]
                    weight = round(1.0 + (n % 2) * 0.5, 2)
                    patch = {"spec": {"modelAliases": aliases, "scorerWeights": {"load": weight}}}
                    await asyncio.to_thread(
                        custom.patch_namespaced_custom_object,
                        GROUP, VERSION, args.namespace, PLURAL, args.policy, patch,
                    )  # fmt: skip
                    started = time.monotonic()
                    pending = set(urls)
                    while pending:
                        if time.monotonic() - started > args.deadline:
                            raise SystemExit(f"change {n}: not routed after {args.deadline:.0f}s")
                        done = [u for u in pending if await _serves(http, u, alias)]
                        pending -= set(done)
                        if pending:
                            await asyncio.sleep(0.02)
                    latencies.append(time.monotonic() - started)
                    print(
                        f"  change {n + 1}/{args.changes}: {latencies[-1] * 1000:.0f} ms",
                        flush=True,
                    )
            finally:
                stop.set()
                await asyncio.gather(*loaders)
                await asyncio.to_thread(
                    custom.patch_namespaced_custom_object,
                    GROUP, VERSION, args.namespace, PLURAL, args.policy,
                    {"spec": {"modelAliases": base_aliases,
                              "scorerWeights": policy["spec"].get("scorerWeights", {})}},
                )  # fmt: skip
        after = _identity(_routers(core, args.namespace, args.policy))
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    failed = sum(v for k, v in tally.items() if k != "ok")
    return {
        "changes": len(latencies),
        "routers": len(urls),
        "latency_s": {"p50": statistics.median(ordered), "p99": p99, "max": ordered[-1]},
        "load": tally,
        "failed_requests": failed,
        "router_pods_unchanged": before == after,
        "target_p99_s": 5.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=clusters.DEFAULT_NAME, help="dev cluster name")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--policy", required=True, help="RoutingPolicy name")
    parser.add_argument("--model", help="served model (default: the first alias's model)")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="load clients")
    parser.add_argument("--deadline", type=float, default=30.0, help="give up on a change after")
    args = parser.parse_args()
    result = asyncio.run(_run(args))
    lat = result["latency_s"]
    print(
        f"apply → routed: p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms, "
        f"max {lat['max'] * 1000:.0f} ms over {result['changes']} changes "
        f"(target p99 ≤ 5 s); load during the changes: {result['load']} "
        f"(failed {result['failed_requests']}); router pods unchanged: "
        f"{result['router_pods_unchanged']}"
    )
    out = ROOT / "bench" / "out" / "policy_reload.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0 if result["failed_requests"] == 0 and result["router_pods_unchanged"] else 1


if __name__ == "__main__":
    sys.exit(main())
