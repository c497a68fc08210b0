"""gpufleet's name in the Kubernetes API: the group and version of its resources.

The labels and annotations gpufleet puts on what it creates are keyed by the same group
(``gpufleet.labels``), and the API types carry it (``gpufleet.api``); both build on this
module, which imports nothing, so neither has to import the other.
"""

from __future__ import annotations

GROUP = "gpufleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
