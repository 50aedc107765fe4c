"""Pure builders: (Workspace, preset, SKU) → the dicts of every object the operator creates. No I/O.

:func:`plan_workspace` decides sizes and builds everything; the individual builders are public for controllers
that need one object (e.g. to re-create a deleted Service).
"""

from kaito.workloads.common import GPU_TOLERATIONS, node_affinity, owner_references, spec_hash, workspace_labels
from kaito.workloads.inference import (
    headless_service,
    headless_service_name,
    inference_config_name,
    inference_configmap,
    inference_service,
    inference_statefulset,
)
from kaito.workloads.nodeclaim import build_nodeclaim, nodeclaim_name, storage_gib
from kaito.workloads.plan import PlanError, WorkloadPlan, byo_gpus_per_node, plan_workspace
from kaito.workloads.tuning import (
    default_config_text,
    default_training_config,
    tuning_config_name,
    tuning_configmap,
    tuning_job,
)

__all__ = [
    "GPU_TOLERATIONS",
    "PlanError",
    "WorkloadPlan",
    "build_nodeclaim",
    "byo_gpus_per_node",
    "default_config_text",
    "default_training_config",
    "headless_service",
    "headless_service_name",
    "inference_config_name",
    "inference_configmap",
    "inference_service",
    "inference_statefulset",
    "node_affinity",
    "nodeclaim_name",
    "owner_references",
    "plan_workspace",
    "spec_hash",
    "storage_gib",
    "tuning_config_name",
    "tuning_configmap",
    "tuning_job",
    "workspace_labels",
]
