"""Whole ModelPool and RoutingPolicy objects, for code that reads them from the API server
or from files (the operator, ``examples/`` checks): metadata, spec, status.

Only the metadata fields gpufleet uses are kept; the rest is ignored, not rejected,
because the API server adds fields (managedFields, uid …) that are none of our business.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from gpufleet.api import common
from gpufleet.api.modelpool import ModelPoolSpec, ModelPoolStatus
from gpufleet.api.routingpolicy import RoutingPolicySpec, RoutingPolicyStatus


class ObjectMeta(common.ApiModel):
    """The parts of ``metadata`` gpufleet reads."""

    model_config = pydantic.ConfigDict(extra="ignore")

    name: str = pydantic.Field(max_length=253, pattern=common.DNS_SUBDOMAIN, description="Name.")
    namespace: str | None = pydantic.Field(default=None, description="Namespace.")
    labels: dict[str, str] = pydantic.Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = pydantic.Field(default_factory=dict, description="Annotations.")
    generation: int | None = pydantic.Field(default=None, description="Spec generation.")
    uid: str | None = pydantic.Field(default=None, description="UID.")


class ModelPool(common.ApiModel):
    """A ModelPool object."""

    api_version: Literal["gpufleet.io/v1alpha1"] = pydantic.Field(description="API version.")
    kind: Literal["ModelPool"] = pydantic.Field(description="Kind.")
    metadata: ObjectMeta = pydantic.Field(description="Object metadata.")
    spec: ModelPoolSpec = pydantic.Field(description="Desired state.")
    status: ModelPoolStatus | None = pydantic.Field(default=None, description="Observed state.")


class RoutingPolicy(common.ApiModel):
    """A RoutingPolicy object."""

    api_version: Literal["gpufleet.io/v1alpha1"] = pydantic.Field(description="API version.")
    kind: Literal["RoutingPolicy"] = pydantic.Field(description="Kind.")
    metadata: ObjectMeta = pydantic.Field(description="Object metadata.")
    spec: RoutingPolicySpec = pydantic.Field(description="Desired state.")
    status: RoutingPolicyStatus | None = pydantic.Field(default=None, description="Observed state.")
