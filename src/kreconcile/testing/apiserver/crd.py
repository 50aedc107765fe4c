"""CustomResourceDefinitions: validation, defaults, status conditions and the resource types they serve.

Follows apiextensions.k8s.io/v1: ``metadata.name`` must be ``<plural>.<group>``; at least one version, exactly one
``storage: true``; every version needs ``schema.openAPIV3Schema`` with ``type: object`` at the root. A created
CRD is accepted at once (``NamesAccepted`` and ``Established`` True) and gets the
``customresourcecleanup.apiextensions.k8s.io`` finalizer, which the server's cleanup removes after deleting all
instances, like the real apiextensions-apiserver.
"""

from __future__ import annotations

from typing import Any

from .errors import cause
from .resources import ResourceType

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_DEFAULT_COLUMNS = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def _condition(type_: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {"type": type_, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message}


def default_crd(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Defaults (singular, listKind, conversion None) and, on create, the accepted status and cleanup finalizer."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for v in spec.get("versions") or []:
        if isinstance(v, dict):
            v.setdefault("served", True)
    meta = obj["metadata"]
    if old is None:
        finalizers = meta.setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)
        now = meta.get("creationTimestamp", "")
        storage = [v["name"] for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("storage")]
        obj["status"] = {
            "acceptedNames": dict(names) if isinstance(names, dict) else {},
            "conditions": [
                _condition("NamesAccepted", "NoConflicts", "no conflicts found", now),
                _condition("Established", "InitialNamesAccepted", "the initial names have been accepted", now),
            ],
            "storedVersions": storage,
        }
    elif isinstance(obj.get("status"), dict) and isinstance(names, dict):
        obj["status"]["acceptedNames"] = dict(names)
        stored = obj["status"].setdefault("storedVersions", [])
        for v in spec.get("versions") or []:
            if isinstance(v, dict) and v.get("storage") and v.get("name") not in stored:
                stored.append(v["name"])


def validate_crd(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    """The causes (possibly none) why ``obj`` is not a valid CRD."""
    causes: list[dict[str, str]] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [cause("spec", "Required value", "FieldValueRequired")]
    group = spec.get("group")
    names: dict[str, Any] = spec["names"] if isinstance(spec.get("names"), dict) else {}
    if not group or "." not in str(group):
        causes.append(cause("spec.group", f'Invalid value: "{group}": should be a domain with at least one dot'))
    if not names.get("plural"):
        causes.append(cause("spec.names.plural", "Required value", "FieldValueRequired"))
    if not names.get("kind"):
        causes.append(cause("spec.names.kind", "Required value", "FieldValueRequired"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(cause("spec.scope", f'Unsupported value: "{spec.get("scope")}": supported values: '
                            '"Cluster", "Namespaced"', "FieldValueNotSupported"))
    expected = f"{names.get('plural')}.{group}"
    if obj["metadata"].get("name") != expected:
        causes.append(cause("metadata.name", f'Invalid value: "{obj["metadata"].get("name")}": must be '
                            f"spec.names.plural+\".\"+spec.group"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(cause("spec.versions", "Invalid value: must have exactly one version marked as storage "
                            "version"))
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if versions and len(storage) != 1:
        causes.append(cause("spec.versions", "Invalid value: must have exactly one version marked as storage "
                            "version"))
    for i, v in enumerate(versions):
        if not isinstance(v, dict) or not v.get("name"):
            causes.append(cause(f"spec.versions[{i}].name", "Required value", "FieldValueRequired"))
            continue
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            causes.append(cause(f"spec.versions[{i}].schema.openAPIV3Schema", "Required value: schemas are "
                                "required", "FieldValueRequired"))
        elif schema.get("type") != "object":
            causes.append(cause(f"spec.versions[{i}].schema.openAPIV3Schema.type", f'Unsupported value: '
                                f'"{schema.get("type")}": supported values: "object"', "FieldValueNotSupported"))
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("group") != group:
            causes.append(cause("spec.group", "Invalid value: field is immutable"))
        if old_spec.get("scope") != spec.get("scope"):
            causes.append(cause("spec.scope", "Invalid value: field is immutable"))
    return causes


def types_from_crd(obj: dict[str, Any]) -> list[ResourceType]:
    """One :class:`ResourceType` per served version of an established CRD."""
    spec = obj["spec"]
    names = spec["names"]
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), versions[0]["name"])
    out = []
    for v in versions:
        subs = v.get("subresources") or {}
        scale = subs.get("scale")
        rt = ResourceType(
            group=spec["group"], version=v["name"], plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(), kind=names["kind"],
            namespaced=spec["scope"] == "Namespaced", short_names=list(names.get("shortNames") or []),
            categories=list(names.get("categories") or []),
            subresources={s for s in ("status", "scale") if s in subs},
            status_subresource="status" in subs, tracks_generation=True, crd=obj["metadata"]["name"],
            schema=(v.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=list(v.get("additionalPrinterColumns") or _DEFAULT_COLUMNS),
            scale_paths=dict(scale) if isinstance(scale, dict) else None,
            storage_version=storage, served_versions=[x["name"] for x in versions],
        )
        out.append(rt)
    return out
