"""``gpufleet worker``: the worker image's entrypoint, which checks its GPUs, then execs vLLM.

Pure: ``inventory`` (what a GPU reports, and the small interface NVML is read through),
``claim`` (what the pod asked for, from its environment and vLLM's arguments) and
``checks`` (found versus asked: mismatches, warnings, the NCCL environment). I/O: ``nvml``
(the pynvml-backed inventory) and ``command`` (the CLI, which execs vLLM). This package
imports nothing.
"""
