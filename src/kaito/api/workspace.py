"""The ``Workspace`` custom resource (``kaito.sh`` v1alpha1 and v1beta1) and the types it is made of.

Shape (the seed's, upstream's): no ``spec``; ``resource``, ``inference`` and ``tuning`` are top-level fields next
to ``metadata``; ``status`` is a subresource. Both versions have the same shape; v1beta1 adds ``status.state`` and
``status.targetNodeCount``, and only v1alpha1 defaults ``resource.instanceType`` (to ``Standard_NC24ads_A100_v4``,
as upstream). These models check types and the closed enums; the admission rules with their fix-it messages live
in :mod:`kaito.webhook.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, JsonValue

from kaito.api import constants as c
from kaito.api.meta import Condition, KubeModel, LabelSelector, ObjectMeta

DEFAULT_INSTANCE_TYPE_V1ALPHA1 = "Standard_NC24ads_A100_v4"
"""v1alpha1's default ``resource.instanceType`` (upstream kubebuilder default)."""

_PRESERVE: dict[str, JsonValue] = {"x-kubernetes-preserve-unknown-fields": True}


class ResourceSpec(KubeModel):
    """The nodes a workspace runs on: how many, which instance type, and which nodes may be used."""

    count: int = Field(default=1, ge=1, description="Number of nodes to run the workload on (default 1).")
    instance_type: str | None = Field(
        default=None,
        description="Cloud instance type (VM size / SKU) of the nodes, e.g. Standard_NC6s_v3. Required when kaito "
        "provisions the nodes; see docs/api.md for the catalog, including the local-* types of kaito dev.",
    )
    label_selector: LabelSelector = Field(
        description="Labels the workspace's nodes carry; provisioned nodes get matchLabels, and bring-your-own "
        "nodes are selected by it."
    )
    preferred_nodes: list[str] | None = Field(
        default=None,
        description="Deprecated: names of existing nodes to use (bring your own nodes) instead of provisioning.",
    )


class ResourceSpecV1alpha1(ResourceSpec):
    """v1alpha1's ResourceSpec: ``instanceType`` defaults to Standard_NC24ads_A100_v4."""

    instance_type: str | None = Field(
        default=DEFAULT_INSTANCE_TYPE_V1ALPHA1,
        description="Cloud instance type (VM size / SKU) of the nodes (default Standard_NC24ads_A100_v4).",
    )


class PresetOptions(KubeModel):
    """Overrides for a preset: a private image and the secrets to pull it."""

    image: str | None = Field(default=None, description="Image to run instead of the preset's (private access).")
    image_pull_secrets: list[str] | None = Field(
        default=None, description="Names of Secrets in the workspace namespace used to pull the image."
    )


class PresetSpec(KubeModel):
    """A model from kaito's preset catalog."""

    name: str = Field(description="Preset name, e.g. phi-3-mini-4k-instruct (see `kaito plan --list-presets`).")
    access_mode: Literal["public", "private"] = Field(
        default="public", description="public: the preset's image; private: presetOptions.image."
    )
    preset_options: PresetOptions | None = Field(default=None, description="Image override for private access.")


class DataSource(KubeModel):
    """Where data comes from: URLs, a volume or an image (adapters, tuning input)."""

    name: str | None = Field(default=None, description="Name of the data (adapters: the adapter's name).")
    urls: list[str] | None = Field(default=None, description="http(s) URLs to download (tuning input only).")
    volume_source: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 VolumeSource holding the data.",
        json_schema_extra=_PRESERVE,
    )
    image: str | None = Field(default=None, description="Image (OCI artifact) holding the data.")
    image_pull_secrets: list[str] | None = Field(
        default=None, description="Names of Secrets in the workspace namespace used to pull the image."
    )


class DataDestination(KubeModel):
    """Where results go: a volume or an image pushed to a registry."""

    volume_source: dict[str, Any] | None = Field(
        default=None, description="A core/v1 VolumeSource to write results to.", json_schema_extra=_PRESERVE
    )
    image: str | None = Field(default=None, description="Image reference to push the results to.")
    image_push_secret: str | None = Field(
        default=None, description="Name of a docker-registry Secret with push rights to image."
    )


class AdapterSpec(KubeModel):
    """A LoRA adapter served with the model."""

    source: DataSource = Field(description="Where the adapter comes from (name plus image or volumeSource).")
    strength: str | None = Field(
        default="1.0", description='Weight of the adapter, a decimal string in ["0.0", "1.0"] (default "1.0").'
    )


class InferenceSpec(KubeModel):
    """What to serve: a preset (or your own pod template), its config and adapters."""

    preset: PresetSpec | None = Field(default=None, description="The model preset to serve.")
    template: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 PodTemplateSpec to run instead of a preset (mutually exclusive with preset).",
        json_schema_extra=_PRESERVE,
    )
    config: str | None = Field(default=None, description="Name of a ConfigMap with inference_config.yaml.")
    adapters: list[AdapterSpec] | None = Field(
        default=None, description=f"LoRA adapters to load, at most {c.MAX_ADAPTERS}."
    )


class TuningSpec(KubeModel):
    """A fine-tuning job: base preset, method, data in, adapter out."""

    preset: PresetSpec | None = Field(default=None, description="The base model preset to tune.")
    method: Literal["lora", "qlora"] | None = Field(default=None, description="lora or qlora.")
    config: str | None = Field(
        default=None, description="Name of a ConfigMap with training_config.yaml (default: the method's)."
    )
    input: DataSource | None = Field(default=None, description="Training data: exactly one of urls, image, volume.")
    output: DataDestination | None = Field(
        default=None, description="Where the adapter goes: exactly one of volumeSource or image."
    )


class WorkspaceStatus(KubeModel):
    """Observed state of a Workspace (written only by the operator)."""

    worker_nodes: list[str] | None = Field(default=None, description="Names of the nodes the workload runs on.")
    conditions: list[Condition] | None = Field(
        default=None,
        description="NodeClaimReady, NodesReady, ResourceReady, InferenceReady, JobStarted, WorkspaceSucceeded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class WorkspaceStatusV1beta1(WorkspaceStatus):
    """v1beta1 status: adds the summary ``state`` and the ``targetNodeCount``."""

    state: Literal["Pending", "Ready", "NotReady", "Running", "Succeeded", "Failed"] | None = Field(
        default=None, description="Summary: Pending, Ready, NotReady, Running, Succeeded or Failed."
    )
    target_node_count: int | None = Field(
        default=None, description="Nodes the workspace needs (estimator or resource.count)."
    )


class _WorkspaceBase(KubeModel):
    kind: Literal["Workspace"] = Field(default="Workspace", description="Workspace.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    inference: InferenceSpec | None = Field(default=None, description="Serve a model (exclusive with tuning).")
    tuning: TuningSpec | None = Field(default=None, description="Fine-tune a model (exclusive with inference).")

    @property
    def name(self) -> str:
        """``metadata.name`` ("" when unset)."""
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` (``"default"`` when unset, as kubectl does)."""
        return self.metadata.namespace or "default"


class WorkspaceV1beta1(_WorkspaceBase):
    """Workspace, kaito.sh/v1beta1 (the storage version): a model served or tuned on GPU nodes."""

    api_version: Literal["kaito.sh/v1beta1"] = Field(default="kaito.sh/v1beta1", description="kaito.sh/v1beta1.")
    resource: ResourceSpec = Field(description="The nodes the workspace runs on.")
    status: WorkspaceStatusV1beta1 | None = Field(default=None, description="Observed state.")


class WorkspaceV1alpha1(_WorkspaceBase):
    """Workspace, kaito.sh/v1alpha1: a model served or tuned on GPU nodes."""

    api_version: Literal["kaito.sh/v1alpha1"] = Field(default="kaito.sh/v1alpha1", description="kaito.sh/v1alpha1.")
    resource: ResourceSpecV1alpha1 = Field(description="The nodes the workspace runs on.")
    status: WorkspaceStatus | None = Field(default=None, description="Observed state.")


Workspace = WorkspaceV1beta1
"""The storage version's model."""
AnyWorkspace = WorkspaceV1alpha1 | WorkspaceV1beta1

WORKSPACE_MODELS: dict[str, type[WorkspaceV1alpha1] | type[WorkspaceV1beta1]] = {
    c.V1ALPHA1: WorkspaceV1alpha1,
    c.V1BETA1: WorkspaceV1beta1,
}


def workspace_model_for(api_version: object) -> type[WorkspaceV1alpha1] | type[WorkspaceV1beta1]:
    """The model class for ``apiVersion`` (``kaito.sh/v1alpha1`` or ``kaito.sh/v1beta1``).

    Raises:
        ValueError: any other apiVersion, naming the two supported ones.
    """
    if isinstance(api_version, str) and api_version.startswith(f"{c.GROUP}/"):
        model = WORKSPACE_MODELS.get(api_version.split("/", 1)[1])
        if model is not None:
            return model
    raise ValueError(
        f"apiVersion: {api_version!r} is not a Workspace version; use kaito.sh/v1beta1 or kaito.sh/v1alpha1"
    )


def parse_workspace(obj: Mapping[str, Any], *, strict: bool = False) -> AnyWorkspace:
    """Validate a wire-form Workspace dict into the model of its ``apiVersion``.

    ``strict=True`` rejects values of the wrong JSON type instead of coercing them (``count: "2"``), as the API
    server's schema validation does.

    Raises:
        ValueError: unknown apiVersion.
        pydantic.ValidationError: wrong types, unknown fields, values outside an enum (``loc`` is the wire path).
    """
    return workspace_model_for(obj.get("apiVersion")).model_validate(dict(obj), strict=strict)
