"""The router: an OpenAI-compatible aiohttp proxy that routes by expected compute cost.

``app.create_app(config)`` builds it; ``command`` is ``gpufleet router``. Decisions come
from ``gpufleet.routing``; this package gathers their inputs (request bodies, endpoint
discovery, Prometheus signals, in-router accounting) and applies their results.
"""
