"""gpufleet's autoscaler: the I/O loop over the pure decisions of ``gpufleet.scaling``.

Pure: ``scalinginputs`` (a pool's inputs from what the operator observes and the
queries it runs). I/O: ``autoscaler`` (the loop: nodes, Prometheus, routers' ``/stats``,
one decision per pool, ``spec.replicas`` applied). Imports nothing itself.
"""
