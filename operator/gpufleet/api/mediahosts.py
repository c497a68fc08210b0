"""Which host names a ModelPool may list in ``serving.allowedMediaDomains`` (pure).

vLLM fetches a media URL when its host equals a listed name, then resolves that name
from inside the pod. So a listed name must be a public DNS name: not an IP literal in
any spelling the resolver accepts (``169.254.169.254``, ``127.1``, ``2130706433``,
``0x7f.1`` — all end in a label that starts with a digit, which no top-level domain
does), not a single label (the pod's resolver appends the cluster's search domains:
``kubernetes`` is the API server), and not a name in a space that only means something
inside the cluster or the host: ``localhost`` and ``*.localhost`` (RFC 6761),
``*.local`` (mDNS, RFC 6762, and Kubernetes' ``cluster.local``), any name with a
``svc`` label (Services), ``*.internal`` (cloud metadata: ``metadata.google.internal``),
``*.localdomain`` and ``*.arpa`` (reverse lookups). ``PATTERN`` is what the API server's
CEL rule refuses; ``problem`` is its pydantic twin, with the reason.
"""

from __future__ import annotations

import re

# Why each refused shape is refused, in the order they are checked.
_SHAPES = (
    (r"(^|[.])localhost$", "is loopback (localhost)"),
    (r"(^|[.])[0-9][^.]*$", "is an IP address (its last label starts with a digit)"),
    (r"^[^.]*$", "is a single label, which the pod's resolver completes with the "
                 "cluster's search domains"),
    (r"[.]svc([.]|$)", "names a Kubernetes Service (a 'svc' label)"),
    (r"[.](local|internal|localdomain|arpa)$",
     "is in a space only the cluster or the host resolves (.local, .internal, "
     ".localdomain, .arpa)"),
)  # fmt: skip
PATTERN = "|".join(shape for shape, _ in _SHAPES)
MESSAGE = (
    "allowedMediaDomains must be public DNS names: not IP addresses, single labels, "
    "localhost, Service names (svc, .cluster.local) or .local/.internal/.arpa names"
)


def problem(host: str) -> str | None:
    """Why ``host`` may not be listed (completes "<host> …"); None when it may."""
    for shape, why in _SHAPES:
        if re.search(shape.replace("$", r"\Z"), host):
            return why
    return None
