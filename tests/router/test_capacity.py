"""Spot capacity against real simulators: the batch class (preferSpot by default) goes
to the spot endpoint while interactive requests spread over both, and /stats shows each
endpoint's capacity type."""

from __future__ import annotations

import aiohttp

from tests.router.peers import Sim, chat, router_config, serve_router, settled


async def test_batch_goes_to_spot_capacity(sims: tuple[Sim, Sim]) -> None:
    fast, slow = sims
    backends = [fast.backend(), slow.backend() | {"capacityType": "spot"}]
    config = router_config(backends, strategy="round-robin")
    served: dict[str, set[str]] = {"batch": set(), "interactive": set()}
    async with serve_router(config) as (url, _), aiohttp.ClientSession() as session:
        for klass in ["batch"] * 4 + ["interactive"] * 4:
            headers = {"x-gpufleet-class": klass}
            request = session.post(
                url + "/v1/chat/completions", json=chat(max_tokens=2), headers=headers
            )
            async with request as response:
                assert response.status == 200
                served[klass].add(response.headers["x-gpufleet-gpu"])
        stats = await settled(url)
    assert served == {"batch": {"A100-40GB"}, "interactive": {"A100-40GB", "H100-80GB"}}
    capacity = {e["gpu"]: (e["capacity_type"], e["interruption"]) for e in stats["endpoints"]}
    assert capacity == {"A100-40GB": ("spot", ""), "H100-80GB": ("on-demand", "")}
