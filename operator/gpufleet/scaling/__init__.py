"""Autoscaling decisions for ModelPools: pure, with injected time.

``inventory`` turns Node and Pod objects into the free GPUs per generation and node;
``model`` holds the typed inputs (signals, router demand, prices, targets, behaviour,
history) and outputs (desired replicas per variant, with the reason); ``economics``
ranks variants by price per token and speed; ``capacity`` measures the load against the
targets; ``behaviour`` applies the stabilisation windows and rate limits; ``decide``
makes one decision per pool from all of them. Nothing here does I/O: the operator loop
gathers the inputs and applies the result.
"""
