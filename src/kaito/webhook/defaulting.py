"""Defaulting (mutating admission) for Workspace: the JSON patch that fills in the API's defaults.

Defaults (the same the CRD schema declares, so objects look the same with or without the webhook):
``resource.count`` = 1; v1alpha1 ``resource.instanceType`` = ``Standard_NC24ads_A100_v4`` (upstream);
``inference.preset.accessMode`` / ``tuning.preset.accessMode`` = ``public``; every adapter's ``strength`` = "1.0".
Only fields whose parent exists are defaulted; a malformed object gets no patch (validation rejects it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaito.api import constants as c
from kaito.api.workspace import DEFAULT_INSTANCE_TYPE_V1ALPHA1


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def default_patch(obj: Any) -> list[dict[str, Any]]:
    """RFC 6902 ``add`` operations that default ``obj`` (a Workspace wire dict); [] when nothing is missing."""
    ops: list[dict[str, Any]] = []
    if not isinstance(obj, Mapping):
        return ops
    resource = obj.get("resource")
    if isinstance(resource, Mapping):
        if "count" not in resource:
            ops.append({"op": "add", "path": "/resource/count", "value": 1})
        if obj.get("apiVersion") == f"{c.GROUP}/{c.V1ALPHA1}" and "instanceType" not in resource:
            ops.append({"op": "add", "path": "/resource/instanceType", "value": DEFAULT_INSTANCE_TYPE_V1ALPHA1})
    for section in ("inference", "tuning"):
        body = obj.get(section)
        if not isinstance(body, Mapping):
            continue
        preset = body.get("preset")
        if isinstance(preset, Mapping) and "accessMode" not in preset:
            ops.append({"op": "add", "path": f"/{_escape(section)}/preset/accessMode", "value": "public"})
    inference = obj.get("inference")
    adapters = inference.get("adapters") if isinstance(inference, Mapping) else None
    if isinstance(adapters, list):
        for i, adapter in enumerate(adapters):
            if isinstance(adapter, Mapping) and "strength" not in adapter:
                ops.append({"op": "add", "path": f"/inference/adapters/{i}/strength", "value": "1.0"})
    return ops
