"""Karpenter's ``NodeClaim`` (``karpenter.sh/v1``): the machine request the workspace controller creates and the
machine controller fulfils. Only the fields kaito sets or reads are modelled; the CRD kaito-py generates from this
is a test/dev manifest (on a real cluster Karpenter's own CRD is installed)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from kaito.api.meta import Condition, KubeModel, ObjectMeta


class _KarpenterModel(KubeModel):
    """Karpenter's real CRD has more fields than kaito models; keep them (round-trip) instead of rejecting."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Taint(_KarpenterModel):
    """A core/v1 node taint."""

    key: str = Field(description="Taint key, e.g. sku.")
    value: str | None = Field(default=None, description="Taint value, e.g. gpu.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(description="Taint effect.")


class NodeSelectorRequirement(_KarpenterModel):
    """A node selector requirement with Karpenter's optional ``minValues``."""

    key: str = Field(description="Node label key, e.g. node.kubernetes.io/instance-type.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(description="Operator.")
    values: list[str] | None = Field(default=None, description="Values for In/NotIn/Gt/Lt.")
    min_values: int | None = Field(default=None, description="Minimum distinct values (Karpenter).")


class NodeClassReference(_KarpenterModel):
    """Reference to the provider-specific node class."""

    group: str = Field(description="API group of the node class.")
    kind: str = Field(description="Kind of the node class.")
    name: str = Field(description="Name of the node class.")


class ResourceRequirements(_KarpenterModel):
    """Resources the node must provide, e.g. ``{"storage": "100Gi"}``."""

    requests: dict[str, str] | None = Field(default=None, description="Minimum resources (quantities).")


class NodeClaimSpec(_KarpenterModel):
    """What node to launch."""

    taints: list[Taint] | None = Field(default=None, description="Taints the node is created with.")
    startup_taints: list[Taint] | None = Field(default=None, description="Taints removed once initialised.")
    requirements: list[NodeSelectorRequirement] = Field(description="Constraints the node must meet.")
    resources: ResourceRequirements | None = Field(default=None, description="Resources the node must have.")
    node_class_ref: NodeClassReference | None = Field(default=None, description="Provider node class.")
    expire_after: str | None = Field(default=None, description="Lifetime before replacement, or Never.")


class NodeClaimStatus(_KarpenterModel):
    """What the provider launched."""

    node_name: str | None = Field(default=None, description="Name of the registered Node.")
    provider_id: str | None = Field(default=None, alias="providerID", description="Cloud provider ID of the machine.")
    image_id: str | None = Field(default=None, alias="imageID", description="OS image of the machine.")
    capacity: dict[str, str] | None = Field(default=None, description="Resource capacity of the node.")
    allocatable: dict[str, str] | None = Field(default=None, description="Allocatable resources of the node.")
    conditions: list[Condition] | None = Field(
        default=None,
        description="Launched, Registered, Initialized, Ready.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class NodeClaim(_KarpenterModel):
    """karpenter.sh/v1 NodeClaim: a request for one node (cluster-scoped)."""

    api_version: Literal["karpenter.sh/v1"] = Field(default="karpenter.sh/v1", description="karpenter.sh/v1.")
    kind: Literal["NodeClaim"] = Field(default="NodeClaim", description="NodeClaim.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: NodeClaimSpec = Field(description="The node requested.")
    status: NodeClaimStatus | None = Field(default=None, description="The node launched.")
