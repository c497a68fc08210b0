"""Ask a RoutingPolicy's router pods what they run: ``GET /stats`` on each, concurrently.

The operator's only HTTP client. A ``Poller`` owns one aiohttp session, opened on first
use inside the running loop and closed by the runtime at shutdown. A router that does
not answer within the timeout, answers with an error, or sends a body
``controller.policystatus.parse_report`` refuses, yields a one-line reason instead of a
report; the status counts only routers that answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp

from gpufleet.controller import observe, policystatus


class Poller:
    """``/stats`` of router pods, each within ``timeout`` seconds."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _one(self, pod: observe.ObservedPod, port: int) -> policystatus.RouterReport | str:
        url = f"http://{pod.ip}:{port}/stats"
        try:
            async with self._client().get(url) as response:
                if response.status != 200:
                    return f"router {pod.name}: GET /stats answered {response.status}"
                raw = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"router {pod.name}: GET /stats failed: {exc or type(exc).__name__}"
        return policystatus.parse_report(pod.name, raw)

    async def poll(
        self, pods: Iterable[observe.ObservedPod], *, port: int
    ) -> list[policystatus.RouterReport | str]:
        """One answer (report or reason) per pod, in the pods' order."""
        return list(await asyncio.gather(*(self._one(p, port) for p in pods)))

    async def _body(self, pod: observe.ObservedPod, port: int) -> object:
        try:
            async with self._client().get(f"http://{pod.ip}:{port}/stats") as response:
                if response.status == 200:
                    return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        return None

    async def bodies(self, pods: Iterable[observe.ObservedPod], *, port: int) -> list[object]:
        """Each pod's decoded ``/stats`` body, None for a pod that did not answer (the
        autoscaler reads the routers' demand from them)."""
        return list(await asyncio.gather(*(self._body(p, port) for p in pods)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
