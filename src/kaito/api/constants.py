"""Names shared by the operator, the webhook and the workloads: API group, labels, annotations, finalizer,
condition types and reasons.

Every value is the upstream Kaito name (``shared/reference/kaito-inventory.md``) unless its comment says otherwise,
so objects created by kaito-py look the same to users and tools as upstream's.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "kaito.sh"
"""API group of the Workspace CRD."""
V1ALPHA1: Final = "v1alpha1"
V1BETA1: Final = "v1beta1"
STORAGE_VERSION: Final = V1BETA1
"""v1beta1 is the stored version; v1alpha1 is served with the same shape (no conversion needed)."""
WORKSPACE_KIND: Final = "Workspace"
WORKSPACE_PLURAL: Final = "workspaces"
WORKSPACE_SHORT_NAMES: Final = ("wk", "wks")

KARPENTER_GROUP: Final = "karpenter.sh"
NODECLAIM_VERSION: Final = "v1"
NODECLAIM_KIND: Final = "NodeClaim"
NODECLAIM_PLURAL: Final = "nodeclaims"

# --- labels -------------------------------------------------------------------------------------------------
LABEL_WORKSPACE_NAME: Final = "kaito.sh/workspace"
"""On every object owned by a Workspace: the Workspace's name."""
LABEL_WORKSPACE_NAMESPACE: Final = "kaito.sh/workspacenamespace"
"""On every object owned by a Workspace: the Workspace's namespace (NodeClaims are cluster-scoped)."""
LABEL_NODEPOOL: Final = "karpenter.sh/nodepool"
NODEPOOL_KAITO: Final = "kaito"
"""``karpenter.sh/nodepool=kaito`` marks the NodeClaims kaito's machine controller reconciles."""
LABEL_INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
LABEL_OS: Final = "kubernetes.io/os"
LABEL_GPU_PRODUCT: Final = "nvidia.com/gpu.product"
LABEL_GPU_COUNT: Final = "nvidia.com/gpu.count"
LABEL_GPU_MEMORY: Final = "nvidia.com/gpu.memory"
"""Per-GPU memory in MiB, as NVIDIA GPU feature discovery writes it."""
LABEL_ACCELERATOR: Final = "accelerator"
ACCELERATOR_NVIDIA: Final = "nvidia"
RESOURCE_GPU: Final = "nvidia.com/gpu"
"""Extended resource name of NVIDIA GPUs (device plugin)."""

# --- annotations --------------------------------------------------------------------------------------------
ANNOTATION_ENABLE_LB: Final = "kaito.sh/enablelb"
"""``"True"`` makes the inference Service a LoadBalancer."""
ANNOTATION_BYPASS_RESOURCE_CHECKS: Final = "kaito.sh/bypass-resource-checks"
"""``"True"`` skips the admission GPU-memory check (rule 6)."""
ANNOTATION_REVISION: Final = "workspace.kaito.io/revision"
ANNOTATION_HASH: Final = "workspace.kaito.io/hash"
"""SHA-256 over resource+inference+tuning; see :func:`kaito.workloads.spec_hash`."""
ANNOTATION_DO_NOT_DISRUPT: Final = "karpenter.sh/do-not-disrupt"
ANNOTATION_MODEL_NAME: Final = "sh.kaito.model.name"
"""OCI manifest annotation naming the base model of a pushed adapter."""

FINALIZER: Final = "workspace.finalizer.kaito.sh"

# --- taints and tolerations ---------------------------------------------------------------------------------
TAINT_SKU_KEY: Final = "sku"
TAINT_SKU_VALUE: Final = "gpu"
"""NodeClaims carry the taint ``sku=gpu:NoSchedule``; kaito workloads tolerate it."""

# --- condition types ----------------------------------------------------------------------------------------
COND_NODECLAIM_READY: Final = "NodeClaimReady"
COND_NODES_READY: Final = "NodesReady"
COND_RESOURCE_READY: Final = "ResourceReady"
COND_INFERENCE_READY: Final = "InferenceReady"
COND_JOB_STARTED: Final = "JobStarted"
COND_WORKSPACE_SUCCEEDED: Final = "WorkspaceSucceeded"
COND_WORKSPACE_DELETING: Final = "WorkspaceDeleting"
CONDITION_TYPES: Final = (
    COND_NODECLAIM_READY,
    COND_NODES_READY,
    COND_RESOURCE_READY,
    COND_INFERENCE_READY,
    COND_JOB_STARTED,
    COND_WORKSPACE_SUCCEEDED,
    COND_WORKSPACE_DELETING,
)

# NodeClaim (Karpenter) condition types the machine controller sets, in lifecycle order.
NODECLAIM_LAUNCHED: Final = "Launched"
NODECLAIM_REGISTERED: Final = "Registered"
NODECLAIM_INITIALIZED: Final = "Initialized"
NODECLAIM_READY: Final = "Ready"

# --- condition reasons (CamelCase, one per cause a user can act on) -----------------------------------------
REASON_CONTAINER_OOM_KILLED: Final = "ContainerOOMKilled"
REASON_IMAGE_PULL_ERROR: Final = "ImagePullError"
REASON_CRASH_LOOP_BACKOFF: Final = "ContainerCrashLoopBackOff"
REASON_POD_EVICTED: Final = "PodEvicted"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_PROBE_FAILED: Final = "ProbeFailed"
REASON_NODECLAIM_QUOTA_EXCEEDED: Final = "NodeClaimQuotaExceeded"
REASON_NODECLAIM_NOT_READY: Final = "NodeClaimNotReady"
REASON_NODES_NOT_READY: Final = "NodesNotReady"
REASON_WORKSPACE_READY: Final = "WorkspaceReady"
REASON_INFERENCE_READY: Final = "InferenceReady"
REASON_RESOURCE_READY: Final = "ResourceReady"
REASON_JOB_STARTED: Final = "JobStarted"
REASON_JOB_SUCCEEDED: Final = "JobSucceeded"
REASON_JOB_FAILED: Final = "JobFailed"
REASON_DELETING: Final = "Deleting"
CONDITION_MESSAGE_LIMIT: Final = 256
"""Condition messages copied from pod state are capped at 256 characters (upstream)."""

# --- v1beta1 status.state -----------------------------------------------------------------------------------
STATE_PENDING: Final = "Pending"
STATE_READY: Final = "Ready"
STATE_NOT_READY: Final = "NotReady"
STATE_RUNNING: Final = "Running"
STATE_SUCCEEDED: Final = "Succeeded"
STATE_FAILED: Final = "Failed"
STATES: Final = (STATE_PENDING, STATE_READY, STATE_NOT_READY, STATE_RUNNING, STATE_SUCCEEDED, STATE_FAILED)

# --- the inference runtime contract ---------------------------------------------------------------------------
RUNTIME_PORT: Final = 5000
"""Port the inference runtime listens on inside the pod (upstream)."""
SERVICE_PORT: Final = 80
TORCHRUN_PORT: Final = 29500
"""torch.distributed rendezvous port on the inference Services (the seed's ``80/TCP,29500/TCP``)."""
HEALTH_PATH: Final = "/health"
ADAPTER_DIR: Final = "/mnt/adapter"
CONFIG_DIR: Final = "/mnt/config"
DATA_DIR: Final = "/mnt/data"
OUTPUT_DIR: Final = "/mnt/output"
MAX_ADAPTERS: Final = 10
TUNING_CONFIG_KEY: Final = "training_config.yaml"
INFERENCE_CONFIG_KEY: Final = "inference_config.yaml"
