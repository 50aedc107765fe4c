"""Unknown-field pruning for built-in kinds, from a field table generated from kubernetes-asyncio's models.

The real server decodes built-in objects into Go structs, so fields the type does not declare are dropped (with a
``Warning``) or, under ``fieldValidation=Strict`` (what kubectl sends), rejected with 400 ``strict decoding error:
unknown field "spec.replica"``. The emulator reproduces this with ``builtin_fields.json``: for every model reachable
from the served built-in kinds, its JSON field names and types (``str``, ``V1PodSpec``, ``list[V1Container]``,
``dict(str, str)``, ``object`` for free-form values), taken from ``kubernetes_asyncio.client.models``
(``openapi_types`` + ``attribute_map``, generated from the Kubernetes OpenAPI spec). The table is shipped as data
so starting the emulator does not import those ~900 modules; regenerate it after upgrading kubernetes-asyncio:

    .venv/bin/python -m kreconcile.testing.apiserver.builtin_schema
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from .resources import ResourceType, builtin_types

TABLE = Path(__file__).with_name("builtin_fields.json")
_GROUP_PREFIX = {"events.k8s.io": "Events", "": "Core"}
_REF = re.compile(r"(?:list\[|dict\(str, )?([A-Z]\w+)[\])]?$")


@cache
def _table() -> dict[str, Any]:
    if not TABLE.exists():
        return {"roots": {}, "models": {}}
    data: dict[str, Any] = json.loads(TABLE.read_text())
    return data


def _root_key(rt: ResourceType) -> str:
    return f"{rt.group}/{rt.version}/{rt.kind}"


def _prune(value: Any, type_: str, path: str, pruned: list[str], models: dict[str, dict[str, str]]) -> None:
    m = re.fullmatch(r"list\[(.+)\]", type_)
    if m:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _prune(item, m.group(1), f"{path}[{i}]", pruned, models)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", type_)
    if m:
        if isinstance(value, dict):
            for k, item in value.items():
                _prune(item, m.group(1), f"{path}.{k}", pruned, models)
        return
    fields = models.get(type_)
    if fields is None or not isinstance(value, dict):
        return
    for key in list(value):
        sub = f"{path}.{key}" if path else key
        if key not in fields:
            pruned.append(sub)
            del value[key]
        else:
            _prune(value[key], fields[key], sub, pruned, models)


def prune_builtin(rt: ResourceType, obj: dict[str, Any]) -> list[str]:
    """Drop the fields ``rt``'s kind does not declare (in place); returns their paths (``spec.replica``)."""
    table = _table()
    model = table["roots"].get(_root_key(rt))
    if model is None:
        return []
    pruned: list[str] = []
    _prune(obj, model, "", pruned, table["models"])
    return pruned


def generate() -> dict[str, Any]:
    """Build the table from ``kubernetes_asyncio.client.models`` (needs kubernetes-asyncio installed)."""
    from kubernetes_asyncio.client import models as k8s_models

    roots: dict[str, str] = {}
    table: dict[str, dict[str, str]] = {}
    pending: list[str] = []
    for rt in builtin_types():
        version = rt.version[0].upper() + rt.version[1:]
        for name in (f"{_GROUP_PREFIX.get(rt.group, '')}{version}{rt.kind}", f"{version}{rt.kind}"):
            if hasattr(k8s_models, name):
                roots[_root_key(rt)] = name
                pending.append(name)
                break
    while pending:
        name = pending.pop()
        if name in table:
            continue
        cls = getattr(k8s_models, name, None)
        if cls is None:
            continue
        fields = {cls.attribute_map[k]: v for k, v in cls.openapi_types.items()}
        table[name] = fields
        for type_ in fields.values():
            m = _REF.match(type_)
            if m and m.group(1) not in table:
                pending.append(m.group(1))
    return {"roots": roots, "models": dict(sorted(table.items()))}


if __name__ == "__main__":
    TABLE.write_text(json.dumps(generate(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {TABLE}")
