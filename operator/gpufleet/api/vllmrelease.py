"""Which ``vllm-openai`` image tags a ModelPool may run: none older than the first release
that fixes CVE-2026-24779 (pure).

vLLM checks a media URL's host against ``--allowed-media-domains``; before v0.14.1 a
backslash in the URL made the check see one host while the fetch went to another
(CVE-2026-24779), so on those releases the list the operator renders guards nothing.
v0.14.1 is the first fixed release: vLLM's security advisory for CVE-2026-24779
(github.com/vllm-project/vllm/security/advisories) names it as the patched version, and
``api.modelpool.DEFAULT_VLLM_IMAGE`` records it. ``PATTERN`` matches a reference to the
``vllm/vllm-openai`` repository on any registry (a mirror holds the same image) whose
tag is a release below v0.14.1, or a v0.14.1 release candidate. Tags that are no
release (``latest``, ``nightly``) and digests say nothing of the version and pass; so
does gpufleet's worker image, which is built on v0.14.1.
"""

from __future__ import annotations

import re

FIRST_FIXED = "v0.14.1"
# 0.0-0.13 (with or without a patch number), 0.14.0, and 0.14.1's release candidates.
PATTERN = r"(^|/)vllm/vllm-openai:v?0[.](([0-9]|1[0-3])([.@-]|$)|14[.]0([^0-9]|$)|14[.]1rc)"
_COMPILED = re.compile(PATTERN.replace("$", r"\Z"))
MESSAGE = (
    f"image: vllm/vllm-openai releases before {FIRST_FIXED} are refused: their "
    "--allowed-media-domains check can be bypassed (CVE-2026-24779); use "
    f"{FIRST_FIXED} or later"
)


def too_old(image: str) -> bool:
    """Whether ``image`` is a ``vllm-openai`` release the operator will not run."""
    return _COMPILED.search(image) is not None
