"""Ask a RoutingPolicy's router pods what they run: ``GET /stats`` on each, concurrently.

The operator's only HTTP client to pods. A ``Poller`` owns one aiohttp session, opened
on first use inside the running loop and closed by the runtime at shutdown. A router
that does not answer within the timeout, answers with an error, sends more than
``MAX_BODY_BYTES``, a body that does not decode (bad UTF-8, bad JSON, JSON nested too
deep for the decoder: ``RecursionError``) or one ``policystatus.parse_report``
refuses, yields a one-line reason instead of a report (``None`` for the autoscaler):
that router's problem, never the caller's; the status counts only routers that answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

import aiohttp

from gpufleet.controller import observe
from gpufleet.controller.routingpolicy import policystatus

# A router's /stats is a few KiB (one entry per backend, pool and tenant); a router that
# sends more is broken or not a router, and the operator's memory is every namespace's.
MAX_BODY_BYTES = 1 << 20


class BadBody(Exception):
    """A ``/stats`` answer the operator does not read: its one-line reason."""


def decode(raw: bytes) -> object:
    """The JSON value in ``raw``; ``BadBody`` for anything that is not one, including
    nesting deeper than the decoder's recursion allows."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadBody(f"not JSON ({type(exc).__name__})") from exc


async def _read(response: aiohttp.ClientResponse) -> object:
    if response.status != 200:
        raise BadBody(f"answered {response.status}")
    declared = response.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise BadBody(f"body of {declared} bytes is over the {MAX_BODY_BYTES} allowed")
    raw = bytearray()
    async for chunk in response.content.iter_any():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:  # stop reading: the rest never reaches memory
            raise BadBody(f"body is over the {MAX_BODY_BYTES} bytes allowed")
    return decode(bytes(raw))


class Poller:
    """``/stats`` of router pods, each within ``timeout`` seconds."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _get(self, pod: observe.ObservedPod, port: int) -> object:
        """The decoded body; ``BadBody`` with the reason for anything else."""
        url = f"http://{pod.ip}:{port}/stats"
        try:
            async with self._client().get(url, allow_redirects=False) as response:
                return await _read(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadBody(f"failed: {exc or type(exc).__name__}") from exc

    async def _one(self, pod: observe.ObservedPod, port: int) -> policystatus.RouterReport | str:
        try:
            raw = await self._get(pod, port)
        except BadBody as exc:
            return f"router {pod.name}: GET /stats {exc}"
        return policystatus.parse_report(pod.name, raw)

    async def poll(
        self, pods: Iterable[observe.ObservedPod], *, port: int
    ) -> list[policystatus.RouterReport | str]:
        """One answer (report or reason) per pod, in the pods' order."""
        return list(await asyncio.gather(*(self._one(p, port) for p in pods)))

    async def _body(self, pod: observe.ObservedPod, port: int) -> object:
        try:
            return await self._get(pod, port)
        except BadBody:
            return None

    async def bodies(self, pods: Iterable[observe.ObservedPod], *, port: int) -> list[object]:
        """Each pod's decoded ``/stats`` body, None for a pod that did not answer (the
        autoscaler reads the routers' demand from them)."""
        return list(await asyncio.gather(*(self._body(p, port) for p in pods)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
