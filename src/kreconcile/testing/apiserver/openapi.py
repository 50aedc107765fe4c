"""OpenAPI v3 documents (reference item 9): ``/openapi/v3`` (the index of group-versions) and
``/openapi/v3/{api/v1 | apis/{g}/{v}}`` (one spec per group-version), enough for kubectl to
- validate server-side: every PATCH operation carries ``x-kubernetes-group-version-kind`` and a
  ``fieldValidation`` query parameter, so kubectl sends ``fieldValidation=Strict`` instead of downloading the
  OpenAPI v2 protobuf;
- explain custom resources: each CRD version's ``openAPIV3Schema`` is a component schema named like the real
  server's (``dev.kreconcile.conformance.v1.Widget``) with ``metadata`` pointing at ObjectMeta;
- compute client-side apply patches: built-in kinds do not advertise strategic merge patch here, so kubectl uses
  its compiled-in merge keys; custom resources get JSON merge patches, as on a real cluster.

``/openapi/v2`` answers 404 (a real server serves protobuf there; kubectl copes without it when v3 exists).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import APIError
from .resources import ResourceType

if TYPE_CHECKING:
    from .server import APIServer

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
_STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
_QUERY = {
    "dryRun": "When present, indicates that modifications should not be persisted (All).",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these changes.",
    "fieldValidation": "How the server treats unknown fields: Ignore, Warn (default) or Strict.",
    "force": "Force is going to \"force\" Apply requests (re-acquire conflicting fields).",
}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def schema_name(rt: ResourceType) -> str:
    """The component name real servers use: ``io.k8s.api.apps.v1.Deployment`` for built-ins, the reversed group
    for custom resources (``dev.kreconcile.conformance.v1.Widget``)."""
    if rt.crd is None:
        group = rt.group.replace(".k8s.io", "").replace(".", "")
        pkg = {"": "core", "apiextensions": "apiextensions-apiserver.pkg.apis.apiextensions"}.get(group, group)
        prefix = "io.k8s." + ("api." if not pkg.startswith("apiextensions-apiserver") else "")
        return f"{prefix}{pkg}.{rt.version}.{rt.kind}"
    return ".".join(reversed(rt.group.split("."))) + f".{rt.version}.{rt.kind}"


def _object_meta() -> dict[str, Any]:
    s = {"type": "string"}
    strmap = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
    return {"description": "ObjectMeta is metadata that all persisted resources must have.", "type": "object",
            "properties": {"name": {**s, "description": "Name must be unique within a namespace."},
                           "generateName": {**s, "description": "Prefix for a server-generated name."},
                           "namespace": {**s, "description": "Namespace of the object."},
                           "labels": {**strmap, "description": "Map of string keys and values for selection."},
                           "annotations": {**strmap, "description": "Unstructured key value map."},
                           "uid": s, "resourceVersion": s, "generation": {"type": "integer", "format": "int64"},
                           "creationTimestamp": {**s, "format": "date-time"},
                           "deletionTimestamp": {**s, "format": "date-time"},
                           "finalizers": {"type": "array", "items": {**s, "default": ""},
                                          "x-kubernetes-list-type": "set"},
                           "ownerReferences": {"type": "array", "items": {"type": "object"},
                                               "x-kubernetes-patch-merge-key": "uid",
                                               "x-kubernetes-patch-strategy": "merge"},
                           "managedFields": {"type": "array", "items": {"type": "object"}}}}


def _kind_schema(rt: ResourceType) -> dict[str, Any]:
    gvk = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    base: dict[str, Any]
    if rt.crd is not None and isinstance(rt.schema, dict):
        base = json.loads(json.dumps(rt.schema))
    else:
        base = {"type": "object", "description": f"{rt.kind} ({rt.api_version}).",
                "x-kubernetes-preserve-unknown-fields": True}
    props = base.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                           "representation of an object."}
    props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource this "
                     "object represents."}
    props["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{_OBJECT_META}"}], "default": {},
                         "description": "Standard object's metadata."}
    base["x-kubernetes-group-version-kind"] = gvk
    return base


def _operations(rt: ResourceType) -> dict[str, Any]:
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    ref = {"$ref": f"#/components/schemas/{schema_name(rt)}"}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
    params = [{"name": n, "in": "query", "description": d, "schema": {"type": "boolean" if n == "force"
                                                                      else "string", "uniqueItems": True}}
              for n, d in _QUERY.items()]
    patch_types = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
    item: dict[str, Any] = {
        "get": {"operationId": f"read{rt.kind}", "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk, "responses": ok},
        "put": {"operationId": f"replace{rt.kind}", "x-kubernetes-action": "put",
                "x-kubernetes-group-version-kind": gvk, "parameters": [p for p in params if p["name"] != "force"],
                "requestBody": {"content": {"application/json": {"schema": ref}}, "required": True},
                "responses": ok},
        "patch": {"operationId": f"patch{rt.kind}", "x-kubernetes-action": "patch",
                  "x-kubernetes-group-version-kind": gvk, "parameters": params,
                  "requestBody": {"content": {t: {"schema": {"$ref": f"#/components/schemas/{_PATCH}"}}
                                              for t in patch_types}, "required": True},
                  "responses": ok},
        "delete": {"operationId": f"delete{rt.kind}", "x-kubernetes-action": "delete",
                   "x-kubernetes-group-version-kind": gvk,
                   "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                       "$ref": f"#/components/schemas/{_STATUS}"}}}}}},
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
    }
    if rt.namespaced:
        item["parameters"].append({"name": "namespace", "in": "path", "required": True,
                                   "schema": {"type": "string"}})
    return item


def group_version_spec(group: str, version: str, types: list[ResourceType]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {_OBJECT_META: _object_meta(), _PATCH: {"type": "object", "description":
                                                                       "Patch is provided to give a concrete name "
                                                                       "and type to the Kubernetes PATCH request "
                                                                       "body."},
                               _STATUS: {"type": "object", "description": "Status is a return value for calls "
                                         "that don't return other objects."}}
    prefix = "/" + _gv_path(group, version)
    for rt in sorted(types, key=lambda t: t.plural):
        scope = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
        paths[f"{scope}/{{name}}"] = _operations(rt)
        schemas[schema_name(rt)] = _kind_schema(rt)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.30.0"}, "paths": paths,
            "components": {"schemas": schemas}}


def _hash(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()


def serve(server: APIServer, request: web.Request, parts: list[str]) -> web.StreamResponse:
    """Serve ``/openapi/v3`` and ``/openapi/v3/<group-version path>``."""
    from .handlers import json_response

    if len(parts) < 2 or parts[1] != "v3":
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    groups = server.registry.group_versions()
    if len(parts) == 2:
        index = {}
        for (g, v), types in sorted(groups.items()):
            doc = group_version_spec(g, v, types)
            path = _gv_path(g, v)
            index[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(doc)}"}
        return json_response({"paths": index})
    rest = parts[2:]
    if rest[0] == "api" and len(rest) == 2:
        key = ("", rest[1])
    elif rest[0] == "apis" and len(rest) == 3:
        key = (rest[1], rest[2])
    else:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    if key not in groups:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    return json_response(group_version_spec(key[0], key[1], groups[key]))
