"""Prometheus signals: a real Prometheus process (the one ``gpufleet dev-cluster build``
builds) scraping real simulators, read by the router in the background; when Prometheus
goes away the router says so and routes on its own accounting."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.router import peers
from tests.router.peers import Sim, chat, router_config, serve_router

pytestmark = pytest.mark.slow


@pytest.fixture
def prometheus(
    sims: tuple[Sim, Sim], tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    targets = [f"127.0.0.1:{s.port}" for s in sims] + [f"127.0.0.1:{s.metrics_port}" for s in sims]
    with peers.prometheus(targets, tmp_path) as found:
        yield found


async def test_signals_from_prometheus_then_stale(
    sims: tuple[Sim, Sim], prometheus: tuple[str, subprocess.Popen[bytes]]
) -> None:
    prom_url, proc = prometheus
    raw = router_config(
        [s.backend() for s in sims],
        prometheus={
            "url": prom_url,
            "refreshIntervalSeconds": 0.5,
            "stalenessSeconds": 2,
            "metricNames": {"kvCacheUsage": "vllm:kv_cache_usage_perc"},  # vLLM V1 name
        },
    )
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=chat()) as r:
            assert r.status == 200

        def all_fresh(stats: dict[str, Any]) -> bool:
            # Each signal is its own query: a scrape may land between two of them, so
            # wait for every one the assertions read.
            rows = [e.get("signals") or {} for e in stats["endpoints"]]
            return all(
                r.get("kv_usage") is not None
                and r.get("waiting") is not None
                and r.get("gpu_memory_percent")
                for r in rows
            )

        stats = await peers.stats_until(session, url, all_fresh)
        assert stats["signals"]["source"] == "prometheus"
        assert stats["signals"]["fresh_endpoints"] == 2
        for endpoint in stats["endpoints"]:
            signals = endpoint["signals"]
            assert 0 <= signals["kv_usage"] <= 1
            assert signals["waiting"] == 0
            assert 80 < signals["gpu_memory_percent"] < 95  # vLLM preallocates 90 %
        proc.terminate()
        proc.wait(timeout=20)
        stats = await peers.stats_until(
            session, url, lambda s: s["signals"]["source"] == "local" and s["signals"]["last_error"]
        )
        assert stats["signals"]["source"] == "local"
        assert stats["signals"]["last_error"] == "unreachable"  # not the error type
        assert all(e["signals"] is None for e in stats["endpoints"])
        async with session.get(url + "/metrics") as r:
            assert "gpufleet_router_signals_stale 1.0" in await r.text()
        async with session.post(url + "/v1/chat/completions", json=chat()) as r:
            assert r.status == 200  # routing goes on with local accounting
