"""kaito's API types: Workspace (kaito.sh v1alpha1/v1beta1), NodeClaim (karpenter.sh/v1), meta types, constants,
and CRD generation. Imports only pydantic and pyyaml (the runtime uses it without kubernetes-asyncio)."""

from kaito.api import constants
from kaito.api.meta import Condition, KubeModel, LabelSelector, LabelSelectorRequirement, ObjectMeta, selector_matches
from kaito.api.nodeclaim import NodeClaim, NodeClaimSpec, NodeClaimStatus
from kaito.api.workspace import (
    AdapterSpec,
    AnyWorkspace,
    DataDestination,
    DataSource,
    InferenceSpec,
    PresetOptions,
    PresetSpec,
    ResourceSpec,
    TuningSpec,
    Workspace,
    WorkspaceStatus,
    WorkspaceStatusV1beta1,
    WorkspaceV1alpha1,
    WorkspaceV1beta1,
    parse_workspace,
    workspace_model_for,
)

__all__ = [
    "AdapterSpec",
    "AnyWorkspace",
    "Condition",
    "DataDestination",
    "DataSource",
    "InferenceSpec",
    "KubeModel",
    "LabelSelector",
    "LabelSelectorRequirement",
    "NodeClaim",
    "NodeClaimSpec",
    "NodeClaimStatus",
    "ObjectMeta",
    "PresetOptions",
    "PresetSpec",
    "ResourceSpec",
    "TuningSpec",
    "Workspace",
    "WorkspaceStatus",
    "WorkspaceStatusV1beta1",
    "WorkspaceV1alpha1",
    "WorkspaceV1beta1",
    "constants",
    "parse_workspace",
    "selector_matches",
    "workspace_model_for",
]
