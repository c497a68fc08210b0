"""Routing decisions, pure and clock-injected: cost estimation, filters, scorers, the
picker, affinity, admission and circuit breaking. Nothing here does I/O or sees HTTP;
``gpufleet.router`` gathers the inputs and applies the results.
"""
