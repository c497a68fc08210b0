"""The ModelPool and RoutingPolicy APIs (pydantic v2): the single source of the CRDs.

``modelpool`` and ``routingpolicy`` hold the spec and status types, built from
``modelsource``, ``variant``, ``traffic``, ``admission`` and ``runtime``; ``crd``
renders the CustomResourceDefinitions; ``command`` is ``gpufleet crds``.
"""

from gpufleet.api.common import API_VERSION, GROUP, VERSION

__all__ = ["API_VERSION", "GROUP", "VERSION"]
