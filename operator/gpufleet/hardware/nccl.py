"""NCCL's environment for tensor parallelism across the GPUs of one node (pure data).

The operator sets it on model-server pods with TP >= 4 (``controller.modelpool.podspec``) and
``gpufleet worker`` seeds it for whatever GPU count it finds (``worker.checks``); both
read it here, so the two never disagree.
"""

from __future__ import annotations

# vLLM's recommended NCCL settings for TP >= 4 in one node: fail fast on collective
# errors instead of hanging, and enough channels/buffer for NVLink.
ENV = (
    ("NCCL_ASYNC_ERROR_HANDLING", "1"),
    ("NCCL_MIN_NCHANNELS", "4"),
    ("NCCL_BUFFSIZE", "8388608"),
    ("NCCL_P2P_DISABLE", "0"),
)
