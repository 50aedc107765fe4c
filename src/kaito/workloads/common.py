"""Pieces every workload builder uses: object metadata with kaito's labels and owner reference, the spec hash,
node affinity from the label selector, tolerations, and images. Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace

RUNTIME_IMAGE = "kaito-py/runtime-cpu:{version}"
"""kaito-py's own image (runtime + tools: downloader, OCI puller/pusher); the local cluster maps it to a local
Python command. ``{version}`` is the kaito-py version."""

GPU_TOLERATIONS: list[dict[str, Any]] = [
    {"key": c.RESOURCE_GPU, "operator": "Exists", "effect": "NoSchedule"},
    {"key": c.TAINT_SKU_KEY, "operator": "Equal", "value": c.TAINT_SKU_VALUE, "effect": "NoSchedule"},
]
"""Tolerations of every kaito pod: the device plugin's ``nvidia.com/gpu`` taint and NodeClaims' ``sku=gpu``."""


def workspace_labels(ws: AnyWorkspace) -> dict[str, str]:
    """``kaito.sh/workspace`` and ``kaito.sh/workspacenamespace`` of ``ws``."""
    return {c.LABEL_WORKSPACE_NAME: ws.name, c.LABEL_WORKSPACE_NAMESPACE: ws.namespace}


def owner_references(ws: AnyWorkspace) -> list[dict[str, Any]]:
    """The controller ownerReference to ``ws`` (empty when ``ws`` has no uid yet, e.g. in ``kaito plan``)."""
    if not ws.metadata.uid:
        return []
    return [
        {
            "apiVersion": ws.api_version,
            "kind": c.WORKSPACE_KIND,
            "name": ws.name,
            "uid": ws.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def object_meta(ws: AnyWorkspace, name: str, *, namespaced: bool = True) -> dict[str, Any]:
    """``metadata`` for an object owned by ``ws``: name, namespace, kaito labels, ownerReferences (if uid)."""
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = ws.namespace
    meta["labels"] = workspace_labels(ws)
    refs = owner_references(ws)
    if refs and namespaced:
        meta["ownerReferences"] = refs
    return meta


def spec_hash(ws: AnyWorkspace) -> str:
    """SHA-256 (hex) over the canonical JSON of ``resource``, ``inference`` and ``tuning`` (upstream's
    ``workspace.kaito.io/hash``); equal specs hash equal regardless of key order."""
    wire = ws.to_wire()
    body = {k: wire.get(k) for k in ("resource", "inference", "tuning")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def node_affinity(selector: dict[str, Any] | None) -> dict[str, Any] | None:
    """Required node affinity equivalent to a LabelSelector (matchLabels become ``In [value]``); None if empty."""
    if not selector:
        return None
    exprs: list[dict[str, Any]] = [
        {"key": k, "operator": "In", "values": [v]} for k, v in sorted((selector.get("matchLabels") or {}).items())
    ]
    for e in selector.get("matchExpressions") or []:
        expr: dict[str, Any] = {"key": e["key"], "operator": e["operator"]}
        if e.get("values"):
            expr["values"] = list(e["values"])
        exprs.append(expr)
    if not exprs:
        return None
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}
        }
    }


def runtime_image(version: str) -> str:
    """kaito-py's runtime/tools image for ``version``."""
    return RUNTIME_IMAGE.replace("{version}", version)


def pull_secrets(names: list[str] | None) -> list[dict[str, str]]:
    """``imagePullSecrets`` entries for secret ``names`` (deduplicated, order kept)."""
    return [{"name": n} for n in dict.fromkeys(names or [])]
