"""What every request and response of the router passes: its trace identity, errors
translated into OpenAI's error JSON, and the headers added as a response is prepared.

``trace_middleware`` (outermost) gives each request a ``tracing.Trace``;
``error_middleware`` turns ``RouterError`` and aiohttp's own HTTP errors (unknown route
404, wrong method 405 with ``Allow``, body over the limit 413) into
``{"error": {...}}``, and anything unexpected into a 500 of the same shape. Errors
aiohttp answers before a request reaches the app (malformed HTTP, headers over its
limits) stay its plain-text 400s. ``on_prepare`` echoes ``x-request-id``, closes
connections while draining, and tells the drain which response a request sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gpufleet import logsetup
from gpufleet.router import appkeys, tracing
from gpufleet.router.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    RouterError,
)

log = logging.getLogger("gpufleet.router")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: RouterError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers())


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    trace = request[appkeys.TRACE] = tracing.of(request.headers)
    token = logsetup.REQUEST_ID.set(trace.request_id)  # on every log line while serving
    try:
        return await handler(request)
    finally:
        logsetup.REQUEST_ID.reset(token)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RouterError as error:
        return error_response(error)
    except web.HTTPException as exc:
        return error_response(_translated(request, exc))
    except Exception:
        log.exception("unexpected error while serving %s %s", request.method, request.path)
        return error_response(InternalError("the router failed to serve the request"))


def _translated(request: web.Request, exc: web.HTTPException) -> RouterError:
    """aiohttp's routing and body-limit errors as the router's own."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[appkeys.ROUTER].config.limits.max_body_bytes
        return PayloadTooLarge(f"the request body exceeds {limit} bytes")
    if isinstance(exc, web.HTTPNotFound):
        return RouteNotFound(f"no route {request.method} {request.path} on this router")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = tuple(sorted(exc.allowed_methods))
        return MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
            allowed=allowed,
        )
    if exc.status < 500:
        return BadRequest(exc.reason)
    return InternalError(exc.reason)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    trace = request.get(appkeys.TRACE)
    if trace is not None:
        response.headers["x-request-id"] = trace.request_id
    if request.app[appkeys.ROUTER].draining:
        response.force_close()
    request.app[appkeys.DRAIN].prepared(response)
