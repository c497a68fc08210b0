"""The trace-driven load generator behind ``gpufleet bench load``.

``workloads`` (published length distributions) and ``trace`` (seeded trace generation,
save and load) and ``report`` (percentiles, goodput) are pure; ``client`` replays a trace
against any OpenAI-compatible URL; ``chart`` draws the PNG; ``command`` is the CLI.
"""
