"""Typed application and request state: the router, its upstream HTTP client session,
the drain of in-flight requests, and each request's trace identity."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gpufleet.router.drain import Drain
from gpufleet.router.service import Router
from gpufleet.router.tracing import Trace

ROUTER: web.AppKey[Router] = web.AppKey("router", Router)
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http", aiohttp.ClientSession)
DRAIN: web.AppKey[Drain] = web.AppKey("drain", Drain)
TRACE: web.RequestKey[Trace] = web.RequestKey("trace", Trace)


def http(app: web.Application) -> aiohttp.ClientSession:
    return app[HTTP]
