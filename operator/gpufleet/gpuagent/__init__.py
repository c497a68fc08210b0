"""``gpufleet gpu-agent``: the sidecar that watches a model server's GPUs and judges them.

Pure: ``readings`` (what one GPU reports, and the ``GpuSource`` interface it is read
through) and ``verdict`` (healthy or not, and why); ``scope`` (the pod's GPUs among those
read, from the UUID file the model server writes: ``gpufleet.podgpus``). I/O: ``nvml``
(the pynvml-backed source), ``twinsource`` (the simulator's GPU state, for the dev
cluster), ``exporter`` (DCGM-exporter metric names), ``app`` (``/metrics``, ``/health``,
``/healthz``) and ``command`` (the CLI). This package imports nothing.
"""
