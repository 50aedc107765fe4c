"""Unknown-field pruning for built-in kinds, from kubernetes-asyncio's generated models.

The real server decodes built-in objects into Go structs, so fields the type does not declare are dropped (with a
``Warning``) or, under ``fieldValidation=Strict`` (what kubectl sends), rejected with 400 ``strict decoding error:
unknown field "spec.replica"``. The emulator reproduces this with the field tables of
``kubernetes_asyncio.client.models`` (``openapi_types`` + ``attribute_map``, generated from the Kubernetes OpenAPI
spec). When kubernetes-asyncio is not installed, built-in objects are stored as sent.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from .resources import ResourceType

_GROUP_PREFIX = {"events.k8s.io": "Events", "": "Core"}


@cache
def _models() -> Any:
    try:
        from kubernetes_asyncio.client import models
    except ImportError:  # pragma: no cover - kubernetes-asyncio ships with the operator extra
        return None
    return models


def _model_name(rt: ResourceType) -> str | None:
    models = _models()
    if models is None:
        return None
    version = rt.version[0].upper() + rt.version[1:]
    prefix = _GROUP_PREFIX.get(rt.group, "")
    for name in (f"{prefix}{version}{rt.kind}", f"{version}{rt.kind}"):
        if hasattr(models, name):
            return name
    return None


@cache
def _fields(model: str) -> dict[str, str] | None:
    """JSON field name → type string of a model, or None for free-form types."""
    cls = getattr(_models(), model, None)
    if cls is None:
        return None
    return {cls.attribute_map[k]: v for k, v in cls.openapi_types.items()}


def _prune(value: Any, type_: str, path: str, pruned: list[str]) -> None:
    m = re.fullmatch(r"list\[(.+)\]", type_)
    if m:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _prune(item, m.group(1), f"{path}[{i}]", pruned)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", type_)
    if m:
        if isinstance(value, dict):
            for k, item in value.items():
                _prune(item, m.group(1), f"{path}.{k}", pruned)
        return
    if not isinstance(value, dict) or not type_.startswith(("V1", "V2", "Core", "Events", "Admission",
                                                            "Apiextensions", "Rbac", "Storage", "Authentication")):
        return
    fields = _fields(type_)
    if fields is None:
        return
    for key in list(value):
        sub = f"{path}.{key}" if path else key
        if key not in fields:
            pruned.append(sub)
            del value[key]
        else:
            _prune(value[key], fields[key], sub, pruned)


def prune_builtin(rt: ResourceType, obj: dict[str, Any]) -> list[str]:
    """Drop the fields ``rt``'s kind does not declare (in place); returns their paths (``spec.replica``)."""
    model = _model_name(rt)
    if model is None:
        return []
    pruned: list[str] = []
    _prune(obj, model, "", pruned)
    return pruned
