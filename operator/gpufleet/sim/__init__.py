"""The vLLM-compatible worker simulator: a per-GPU-generation performance model behind
vLLM's OpenAI HTTP API and metric names.

Layers: ``gpufleet.planning.perfmodel`` (cost of one engine step, shared with the
router's learned curves), ``kvcache`` (paged KV blocks with a prefix cache), ``engine``
(the continuous-batching step loop) and ``tokens`` are pure and clock-free; ``runner``
drives the engine in real time, ``server`` is the aiohttp app (its settings and shared
state in ``state``), ``metrics`` the Prometheus exposition, ``faults`` the injected
failures, ``fleet`` the multi-process launcher and ``command`` the ``gpufleet sim`` CLI.
"""
