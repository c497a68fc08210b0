"""Whether an image reference is one the operator's allowed prefixes admit (pure).

References are compared in the form the container runtime resolves them to, so that
``vllm/vllm-openai:v0.14.1``, ``docker.io/vllm/vllm-openai:v0.14.1`` and
``index.docker.io/vllm/vllm-openai:v0.14.1`` are one image (the distribution reference
rules: a first path component with a ``.`` or ``:``, or ``localhost``, is a registry;
otherwise the registry is ``docker.io``, where a one-component name is under
``library/``). A prefix matches only at a boundary: ``ghcr.io/gpufleet/`` admits
everything under that organisation, ``docker.io/vllm/vllm-openai`` that repository with
any tag or digest — but not ``docker.io/vllm/vllm-openai-evil``, nor
``ghcr.io/gpufleet-evil/x``, which anyone may publish.
"""

from __future__ import annotations

from collections.abc import Iterable

ANY = "*"
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_BOUNDARY = ("/", ":", "@")


def canonical(reference: str) -> str:
    """``reference`` with its registry (and Docker Hub's ``library/``) spelled out."""
    first, sep, rest = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first.lower(), rest
    else:
        registry, path = DOCKER_HUB, reference
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = "library/" + path
    return f"{registry}/{path}"


def _admits(prefix: str, image: str) -> bool:
    if prefix == ANY:
        return True
    want = canonical(prefix)
    if not image.startswith(want):
        return False
    return want.endswith(_BOUNDARY) or image == want or image[len(want)] in _BOUNDARY


def allowed(image: str, prefixes: Iterable[str]) -> bool:
    """True when one of ``prefixes`` admits ``image``; no prefix admits nothing."""
    resolved = canonical(image)
    return any(_admits(prefix, resolved) for prefix in prefixes)
