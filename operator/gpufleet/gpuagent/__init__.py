"""``gpufleet gpu-agent``: the sidecar that watches a model server's GPUs and judges them.

Pure: ``readings`` (what one GPU reports, and the ``GpuSource`` interface it is read
through) and ``verdict`` (healthy or not, and why); ``scope`` (which GPUs are the pod's:
the UUID file the model server writes, pure but for its read and write). I/O: ``nvml``
(the pynvml-backed source), ``twinsource`` (the simulator's GPU state, for the dev
cluster), ``exporter`` (DCGM-exporter metric names), ``app`` (``/metrics``, ``/health``,
``/healthz``) and ``command`` (the CLI). This package imports nothing.
"""
