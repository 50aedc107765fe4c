"""One call that decides everything the operator creates for a Workspace: :func:`plan_workspace`.

``kaito plan`` prints it; the workspace and tuning controllers create ``plan.nodeclaims`` and ``plan.objects``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace
from kaito.presets.catalog import SKU, Catalog, ModelPreset, kaito_version, load_catalog
from kaito.presets.estimator import Estimate, estimate
from kaito.workloads.inference import (
    headless_service,
    inference_configmap,
    inference_service,
    inference_statefulset,
)
from kaito.workloads.nodeclaim import build_nodeclaim
from kaito.workloads.tuning import ANNOTATION_JOB_HASH, default_config_text, tuning_configmap, tuning_job, tuning_method


class PlanError(ValueError):
    """The workspace cannot be planned (unknown preset or SKU, no GPU); the message names the field and fix."""


@dataclass(frozen=True)
class WorkloadPlan:
    """What kaito will run for a workspace.

    Attributes:
        preset: the catalog preset (None for ``inference.template``).
        sku: the instance type from the catalog (None for BYO nodes or an unknown tolerated type).
        estimate: the estimator's answer (None without preset or SKU).
        node_count: target node count = max(resource.count, estimate.node_count); tuning always 1.
        gpus_per_node: GPUs each pod requests.
        provisioning: "auto" (kaito creates NodeClaims) or "byo" (existing nodes are used).
        nodeclaims: NodeClaim dicts (empty for BYO).
        objects: Services, ConfigMaps and the StatefulSet or Job, in creation order.
        notes: sentences explaining choices (e.g. why node_count exceeds resource.count).
    """

    preset: ModelPreset | None
    sku: SKU | None
    estimate: Estimate | None
    node_count: int
    gpus_per_node: int
    provisioning: str
    nodeclaims: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def byo_gpus_per_node(nodes: Sequence[Mapping[str, Any]]) -> int:
    """GPU count of bring-your-own nodes from the ``nvidia.com/gpu.count`` label (first node; 0 if absent)."""
    for node in nodes:
        value = ((node.get("metadata") or {}).get("labels") or {}).get(c.LABEL_GPU_COUNT)
        if value is not None and str(value).isdigit():
            return int(value)
    return 0


def _unknown_sku(name: str) -> SKU:
    """A stand-in for an instance type missing from the catalog (tolerated ``Standard_N*`` names are Azure's)."""
    return SKU.model_validate(
        {
            "name": name,
            "cloud": "azure" if name.startswith("Standard_") else "aws",
            "gpu_count": 0,
            "gpu_model": "unknown",
            "gpu_memory_gib": 0,
            "source": "not in catalog",
        }
    )


def plan_workspace(
    ws: AnyWorkspace,
    catalog: Catalog | None = None,
    *,
    auto_provisioning: bool = True,
    nodes: Sequence[Mapping[str, Any]] = (),
    version: str | None = None,
    training_config_text: str | None = None,
    max_model_len: int | None = None,
) -> WorkloadPlan:
    """Decide preset, SKU, node count, parallelism and build every object for ``ws`` (admitted by the webhook).

    Args:
        ws: the workspace.
        catalog: presets and SKUs (default: the packaged catalog).
        auto_provisioning: False when the cluster runs without a node provisioner (BYO only).
        nodes: the BYO nodes (for their GPU count) when kaito does not provision.
        version: kaito-py version for its own images (default: installed version).
        training_config_text: the ``training_config.yaml`` text the operator will snapshot into
            ``<ws>-tuning-config``: the content of the user's ``tuning.config`` ConfigMap (``kaito plan
            --tuning-config FILE``). Default: the method's packaged default when ``tuning.config`` is empty; when it
            names a ConfigMap whose text is not given, the ConfigMap is left out of the plan and the Job carries no
            :data:`~kaito.workloads.tuning.ANNOTATION_JOB_HASH` (it depends on that text), with a note.
        max_model_len: context length to size the KV cache for (default: the estimator's, min(token limit, 8192)).

    Raises:
        PlanError: unknown/deprecated preset, unknown SKU, or a GPU preset on a GPU-less SKU.
    """
    catalog = catalog or load_catalog()
    version = version or kaito_version()
    byo = bool(ws.resource.preferred_nodes) or not auto_provisioning
    preset_spec = ws.inference.preset if ws.inference is not None else (ws.tuning.preset if ws.tuning else None)
    preset: ModelPreset | None = None
    if preset_spec is not None:
        try:
            preset = catalog.preset(preset_spec.name)
        except KeyError as exc:
            path = "inference.preset.name" if ws.inference is not None else "tuning.preset.name"
            raise PlanError(f"{path}: {exc}") from None
    sku = catalog.find_sku(ws.resource.instance_type)
    notes: list[str] = []
    est: Estimate | None = None
    if sku is not None and preset is not None:
        try:
            est = estimate(preset, sku, max_model_len)
        except ValueError as exc:
            raise PlanError(f"resource.instanceType: {exc}") from None
    needs_gpu = preset is not None and preset.requires_gpu
    if byo:
        gpus = byo_gpus_per_node(nodes) if nodes else (sku.gpu_count if sku else 0)
    elif sku is not None:
        gpus = sku.gpu_count
    else:
        # A tolerated unknown type (Standard_N*): provision it anyway, request one GPU per pod for GPU presets.
        gpus = 1 if needs_gpu else 0
        notes.append(
            f"instance type {ws.resource.instance_type!r} is not in the catalog: no GPU estimate; each pod "
            f"requests {gpus} GPU(s)"
        )
    count = ws.resource.count
    node_count = count
    if ws.tuning is not None:
        node_count = 1
    elif est is not None and est.node_count > count:
        node_count = est.node_count
        notes.append(
            f"the estimator needs {est.node_count} node(s) of {ws.resource.instance_type} for "
            f"{preset_spec.name if preset_spec else '?'} (resource.count is {count}); kaito uses {node_count}"
        )
    plan = WorkloadPlan(
        preset=preset,
        sku=sku,
        estimate=est,
        node_count=node_count,
        gpus_per_node=gpus,
        provisioning="byo" if byo else "auto",
        notes=notes,
    )
    if not byo and ws.resource.instance_type:
        node_sku = sku or _unknown_sku(ws.resource.instance_type)
        plan.nodeclaims.extend(build_nodeclaim(ws, node_sku, i, preset) for i in range(node_count))
    if ws.inference is not None:
        plan.objects.append(inference_service(ws, node_count=node_count))
        if node_count > 1:
            plan.objects.append(headless_service(ws))
        if preset is not None and est is not None and not ws.inference.config:
            plan.objects.append(inference_configmap(ws, preset, est, node_count=node_count))
        elif preset is not None and est is None and not ws.inference.config:
            fallback = Estimate(0, node_count, gpus, max(gpus, 1), node_count, min(preset.token_limit, 8192), 0, 0, 0)
            plan.objects.append(inference_configmap(ws, preset, fallback, node_count=node_count))
        plan.objects.append(
            inference_statefulset(ws, preset, node_count=node_count, gpus_per_node=gpus, estimate=est, version=version)
        )
    elif ws.tuning is not None and preset is not None:
        text = training_config_text
        if text is None and not ws.tuning.config:
            text = default_config_text(tuning_method(ws))
        if text is not None:
            plan.objects.append(tuning_configmap(ws, text))
        job = tuning_job(ws, preset, gpus_per_node=gpus, version=version, config_text=text)
        if text is None:
            del job["metadata"]["annotations"][ANNOTATION_JOB_HASH]
            del job["spec"]["template"]["metadata"]["annotations"][ANNOTATION_JOB_HASH]
            notes.append(
                f"tuning.config: the operator copies ConfigMap {ws.namespace}/{ws.tuning.config} into "
                f"{ws.name}-tuning-config; pass its training_config.yaml with --tuning-config to see that ConfigMap "
                f"and the Job's {ANNOTATION_JOB_HASH} annotation"
            )
        plan.objects.append(job)
    return plan
