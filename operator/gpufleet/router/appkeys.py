"""Typed application state: the router and its upstream HTTP client session."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gpufleet.router.service import Router

ROUTER: web.AppKey[Router] = web.AppKey("router", Router)
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("http", aiohttp.ClientSession)


def http(app: web.Application) -> aiohttp.ClientSession:
    return app[HTTP]
