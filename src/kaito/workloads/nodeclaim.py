"""NodeClaims (``karpenter.sh/v1``) a Workspace needs when kaito provisions its nodes. Pure, no I/O.

Names are deterministic — ``<ws name[:40]>-<8 hex of sha256(namespace/name)>-<index>`` — so a restarted operator
with a stale cache computes the same names and a create answers AlreadyExists instead of launching a second machine.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace
from kaito.presets.catalog import SKU, ModelPreset

MIN_STORAGE_GIB = 100
"""Smallest OS disk a NodeClaim requests (room for the runtime image and logs)."""

NODE_CLASS_REFS: dict[str, dict[str, str]] = {
    "azure": {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "default"},
    "aws": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
    "local": {"group": c.GROUP, "kind": "LocalNodeClass", "name": "default"},
}
"""nodeClassRef per cloud: the gpu-provisioner's AKSNodeClass, Karpenter AWS's EC2NodeClass, kaito's local one."""


def nodeclaim_name(namespace: str, name: str, index: int) -> str:
    """Deterministic NodeClaim name for node ``index`` (0-based) of workspace ``namespace/name``."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
    return f"{name[:40]}-{digest}-{index}"


def storage_gib(preset: ModelPreset | None) -> int:
    """OS disk GiB for a node: max(100, 2 × weights + 50) — an image layer and an unpacked copy of the weights
    plus 50 GiB for the OS and runtime (kaito-py's sizing; upstream stores a per-preset disk size)."""
    if preset is None:
        return MIN_STORAGE_GIB
    return max(MIN_STORAGE_GIB, math.ceil(2 * preset.weights_size_gib + 50))


def build_nodeclaim(ws: AnyWorkspace, sku: SKU, index: int, preset: ModelPreset | None) -> dict[str, Any]:
    """NodeClaim ``index`` of ``ws`` on ``sku``: labels (nodepool ``kaito``, workspace, user matchLabels),
    ``karpenter.sh/do-not-disrupt``, taint ``sku=gpu:NoSchedule``, requirements (instance type, linux, nodepool),
    storage request. Cluster-scoped, so no ownerReference: the workspace controller deletes it on workspace delete.
    """
    labels = {
        **(ws.resource.label_selector.match_labels or {}),
        c.LABEL_NODEPOOL: c.NODEPOOL_KAITO,
        c.LABEL_WORKSPACE_NAME: ws.name,
        c.LABEL_WORKSPACE_NAMESPACE: ws.namespace,
    }
    return {
        "apiVersion": f"{c.KARPENTER_GROUP}/{c.NODECLAIM_VERSION}",
        "kind": c.NODECLAIM_KIND,
        "metadata": {
            "name": nodeclaim_name(ws.namespace, ws.name, index),
            "labels": labels,
            "annotations": {c.ANNOTATION_DO_NOT_DISRUPT: "true"},
        },
        "spec": {
            "taints": [{"key": c.TAINT_SKU_KEY, "value": c.TAINT_SKU_VALUE, "effect": "NoSchedule"}],
            "requirements": [
                {"key": c.LABEL_INSTANCE_TYPE, "operator": "In", "values": [sku.name]},
                {"key": c.LABEL_OS, "operator": "In", "values": ["linux"]},
                {"key": c.LABEL_NODEPOOL, "operator": "In", "values": [c.NODEPOOL_KAITO]},
            ],
            "resources": {"requests": {"storage": f"{storage_gib(preset)}Gi"}},
            "nodeClassRef": dict(NODE_CLASS_REFS[sku.cloud]),
        },
    }
