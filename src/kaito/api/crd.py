"""CustomResourceDefinitions generated from the pydantic models.

:func:`generate_crds` returns ``{file name: CRD dict}`` for ``manifests/crds/``; ``hack/gen-crds`` writes them and
``--check`` fails when the committed files differ. The openAPIV3Schema is *structural* (every node typed, no
``$ref``/``anyOf``/``additionalProperties: false``) so the API server prunes, defaults and serves ``kubectl
explain`` from the field descriptions; free-form Kubernetes types (``volumeSource``, ``template``) are
``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kaito.api import constants as c
from kaito.api.nodeclaim import NodeClaim
from kaito.api.workspace import WorkspaceV1alpha1, WorkspaceV1beta1

# Keys copied verbatim from pydantic's JSON schema into the CRD schema (value constraints and docs).
_KEPT = (
    "description",
    "enum",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
)
_EXTENSIONS = ("x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type", "x-kubernetes-list-map-keys")

NODECLAIM_DEV_LABEL = "kaito.sh/test-manifest"
"""Label on the generated NodeClaim CRD: it is for tests and ``kaito dev``; real clusters use Karpenter's CRD."""


def _condition_column(name: str, condition: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
        "description": f"Status of the {condition} condition.",
    }
    if priority:
        column["priority"] = priority
    return column


WORKSPACE_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Instance", "type": "string", "jsonPath": ".resource.instanceType", "description": "Instance type."},
    _condition_column("ResourceReady", c.COND_RESOURCE_READY),
    _condition_column("InferenceReady", c.COND_INFERENCE_READY),
    # The seed's `kubectl get workspace` shows WORKSPACEREADY: upstream's WorkspaceSucceeded condition.
    _condition_column("WorkspaceReady", c.COND_WORKSPACE_SUCCEEDED),
    # Only tuning workspaces set JobStarted; priority 1 shows it with `-o wide`, so the default columns are
    # exactly the seed's.
    _condition_column("JobStarted", c.COND_JOB_STARTED, priority=1),
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
"""``kubectl get workspace``: NAME INSTANCE RESOURCEREADY INFERENCEREADY WORKSPACEREADY AGE (+ JOBSTARTED wide)."""

NODECLAIM_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Type", "type": "string", "jsonPath": ".metadata.labels.node\\.kubernetes\\.io/instance-type"},
    {"name": "Node", "type": "string", "jsonPath": ".status.nodeName"},
    _condition_column("Ready", c.NODECLAIM_READY),
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of ``model`` (camelCase names, descriptions, enums, defaults).

    ``apiVersion``/``kind`` become plain strings and ``metadata`` a plain object (the API server owns them).

    Raises:
        ValueError: the model uses a type with no structural form (a union of two non-null types).
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _convert(raw, defs, in_status=False)
    props = schema.setdefault("properties", {})
    for key in ("apiVersion", "kind"):
        if key in props:
            props[key] = {"type": "string", "description": _TYPE_META_DOC[key]}
    if "metadata" in props:
        props["metadata"] = {"type": "object"}
    order = ("apiVersion", "kind", "metadata", "resource", "spec", "inference", "tuning", "status")
    schema["properties"] = {
        k: props[k] for k in sorted(props, key=lambda k: order.index(k) if k in order else len(order))
    }
    return schema


_TYPE_META_DOC = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an object.",
    "kind": "Kind is a string value representing the REST resource this object represents.",
}


def _convert(node: dict[str, Any], defs: dict[str, Any], *, in_status: bool) -> dict[str, Any]:
    description = node.get("description")
    default = node.get("default")
    extensions = {k: node[k] for k in _EXTENSIONS if k in node}
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        out = _convert(target, defs, in_status=in_status)
    elif "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"no structural form for a union of {len(branches)} types: {node['anyOf']!r}")
        out = _convert(branches[0], defs, in_status=in_status)
    else:
        out = {k: node[k] for k in _KEPT if k in node}
        if "description" in out:
            out["description"] = out["description"].replace("``", "")
        if "const" in node:
            out["enum"] = [node["const"]]
        kind = node.get("type")
        if kind is None and "enum" in out:
            kind = "string"
        if kind == "object":
            out["type"] = "object"
            props = node.get("properties")
            if props:
                out["properties"] = {
                    name: _convert(sub, defs, in_status=in_status or name == "status") for name, sub in props.items()
                }
                if node.get("required"):
                    out["required"] = list(node["required"])
            elif isinstance(node.get("additionalProperties"), dict):
                out["additionalProperties"] = _convert(node["additionalProperties"], defs, in_status=in_status)
            else:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif kind == "array":
            out["type"] = "array"
            out["items"] = _convert(node.get("items", {}), defs, in_status=in_status)
        elif kind in ("string", "integer", "number", "boolean"):
            out["type"] = kind
        else:
            raise ValueError(f"no structural form for schema node {node!r}")
    if description:
        out["description"] = description.replace("``", "")
    if default is not None and not isinstance(default, (list, dict)) and not in_status:
        out["default"] = default
    out.update(extensions)
    return out


def _version(name: str, model: type[BaseModel], *, storage: bool) -> dict[str, Any]:
    return {
        "name": name,
        "served": True,
        "storage": storage,
        "schema": {"openAPIV3Schema": structural_schema(model)},
        "subresources": {"status": {}},
        "additionalPrinterColumns": WORKSPACE_PRINTER_COLUMNS,
    }


def workspace_crd() -> dict[str, Any]:
    """The ``workspaces.kaito.sh`` CRD: v1alpha1 (served) and v1beta1 (served, storage), short names wk/wks."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{c.WORKSPACE_PLURAL}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "names": {
                "kind": c.WORKSPACE_KIND,
                "listKind": f"{c.WORKSPACE_KIND}List",
                "plural": c.WORKSPACE_PLURAL,
                "singular": "workspace",
                "shortNames": list(c.WORKSPACE_SHORT_NAMES),
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [
                _version(c.V1ALPHA1, WorkspaceV1alpha1, storage=False),
                _version(c.V1BETA1, WorkspaceV1beta1, storage=True),
            ],
        },
    }


def nodeclaim_crd() -> dict[str, Any]:
    """A ``nodeclaims.karpenter.sh`` v1 CRD with the fields kaito uses (tests and ``kaito dev`` only)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{c.NODECLAIM_PLURAL}.{c.KARPENTER_GROUP}",
            "labels": {NODECLAIM_DEV_LABEL: "true"},
            "annotations": {
                "kaito.sh/note": "Test/dev manifest generated by kaito-py; on a real cluster install Karpenter's CRD."
            },
        },
        "spec": {
            "group": c.KARPENTER_GROUP,
            "names": {
                "kind": c.NODECLAIM_KIND,
                "listKind": f"{c.NODECLAIM_KIND}List",
                "plural": c.NODECLAIM_PLURAL,
                "singular": "nodeclaim",
            },
            "scope": "Cluster",
            "versions": [
                {
                    "name": c.NODECLAIM_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": structural_schema(NodeClaim)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": NODECLAIM_PRINTER_COLUMNS,
                }
            ],
        },
    }


def generate_crds() -> dict[str, dict[str, Any]]:
    """``{file name under manifests/crds/: CRD}`` for every CRD kaito-py ships."""
    return {
        "kaito.sh_workspaces.yaml": workspace_crd(),
        "karpenter.sh_nodeclaims.test.yaml": nodeclaim_crd(),
    }


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """Reasons ``schema`` is not a structural schema (empty when it is), with the JSON path of each node.

    Checks the rules of the apiextensions.k8s.io/v1 "structural schema" definition kaito's generator can break:
    every node has a ``type`` (unless it preserves unknown fields), no ``$ref``/``anyOf``/``oneOf``/``allOf``,
    no ``additionalProperties`` together with ``properties``, arrays have ``items``.
    """
    problems: list[str] = []
    here = path or "<root>"
    for key in ("$ref", "anyOf", "oneOf", "allOf", "not", "const"):
        if key in schema:
            problems.append(f"{here}: has {key}")
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{here}: has no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{here}: has both properties and additionalProperties")
    if schema.get("type") == "array":
        if "items" not in schema:
            problems.append(f"{here}: array without items")
        else:
            problems.extend(structural_problems(schema["items"], f"{path}[]"))
    for name, sub in (schema.get("properties") or {}).items():
        problems.extend(structural_problems(sub, f"{path}.{name}"))
    if isinstance(schema.get("additionalProperties"), dict):
        problems.extend(structural_problems(schema["additionalProperties"], f"{path}.*"))
    return problems
