"""HTTP routing: parse a Kubernetes REST path and call the registry (reference item 1: wire format).

Paths: ``/api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]`` and the same under
``/apis/{group}/{version}``; the legacy ``/watch/`` prefix; ``/version``, ``/healthz``, ``/readyz``, ``/livez``,
discovery and OpenAPI. Every error is a ``Status`` body with the real code and reason. Request bodies are JSON
(YAML accepted) up to 3 MiB (the real ``maxRequestBodyBytes``; larger → 413 RequestEntityTooLarge).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from . import discovery, openapi, protobuf, subresources
from .errors import APIError, bad_request, method_not_allowed
from .patch import PATCH_TYPES
from .resources import ResourceType
from .watch import serve_watch, truthy

if TYPE_CHECKING:
    from .server import APIServer

MAX_BODY_BYTES = 3 * 1024 * 1024
"""The real server's request body limit for JSON/YAML (``apiserver.MaxRequestBodyBytes``, 3 MiB)."""

_RETURN_DELETED = {("", "pods"), ("", "namespaces"), ("", "services")}
_PUBLIC_PATHS = ("/healthz", "/readyz", "/livez", "/version")


@dataclass
class Target:
    """A parsed resource request path."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_prefix: bool


def parse_path(path: str) -> Target | None:
    """Split a resource path; None if it is not one (discovery documents are handled before)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_prefix = False
    if rest and rest[0] == "watch":
        watch_prefix, rest = True, rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    return Target(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None,
                  rest[2] if len(rest) > 2 else None, watch_prefix)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> web.Response:
    """A JSON response."""
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        headers={"Content-Type": content_type, "Cache-Control": "no-cache, private",
                                 **(headers or {})})


def status_response(err: APIError) -> web.Response:
    """The Status body for an error."""
    return json_response(err.status(), err.code, err.headers)


def _manager(request: web.Request) -> str:
    manager = request.query.get("fieldManager")
    if manager:
        if len(manager) > 128:
            raise APIError(422, "Invalid", "fieldManager: Too long: may not be longer than 128 characters")
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/", 1)[0][:128] or "unknown"


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


async def read_body(request: web.Request) -> bytes:
    """The raw body, or 413 when it exceeds 3 MiB."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY_BYTES}")
    data = await request.read()
    if len(data) > MAX_BODY_BYTES:
        raise APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY_BYTES}")
    return data


def decode_object(data: bytes, content_type: str) -> Any:
    """Decode a JSON (or YAML) request body; 400 BadRequest with the decoder's message when malformed,
    415 for protobuf or other media types."""
    ct = content_type.split(";")[0].strip().lower()
    if ct in ("", "application/json", "*/*"):
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"error decoding request body: invalid JSON: {e}") from e
    if ct == protobuf.PROTOBUF:
        return protobuf.decode(data)
    if ct in ("application/yaml", "application/x-yaml", "text/yaml"):
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as e:
            raise bad_request(f"error decoding YAML request body: {e}") from e
    raise APIError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted '
                   f'media types include: application/json, application/yaml (got "{content_type}")')


class Router:
    """The single aiohttp handler behind every path."""

    def __init__(self, server: APIServer) -> None:
        self.server = server

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except APIError as e:
            return status_response(e)

    def _authorized(self, request: web.Request) -> bool:
        token = self.server.token
        if token is None or request.path in _PUBLIC_PATHS or request.path.startswith(("/healthz/", "/readyz/",
                                                                                      "/livez/")):
            return True
        return request.headers.get("Authorization", "") == f"Bearer {token}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        if not self._authorized(request):
            raise APIError(401, "Unauthorized", "Unauthorized")
        path = request.path.rstrip("/") or "/"
        method = request.method
        if method == "GET":
            special = self._special(request, path)
            if special is not None:
                return special
        target = parse_path(path)
        if target is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        rt = server.registry.lookup(target.group, target.version, target.plural)
        if target.namespace is not None and not rt.namespaced:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        verb = self._verb(method, target, request)
        await server.faults.before(verb, target.plural + (f"/{target.subresource}" if target.subresource else ""))
        namespace = target.namespace if rt.namespaced else None
        if target.subresource:
            return await subresources.handle(server, request, rt, namespace or "", target.name or "",
                                             target.subresource)
        if target.name is None:
            return await self._collection(request, rt, namespace, verb)
        if rt.virtual:
            raise method_not_allowed()
        return await self._item(request, rt, namespace or "", target.name, verb)

    def _special(self, request: web.Request, path: str) -> web.StreamResponse | None:
        server = self.server
        if path in ("/healthz", "/readyz", "/livez") or path.startswith(("/healthz/", "/readyz/", "/livez/")):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return json_response(discovery.version_info())
        groups = server.registry.group_versions()
        accept = request.headers.get("Accept", "")
        if path in ("/api", "/apis"):
            media = discovery.wants_aggregated(accept)
            if media is not None:
                return json_response(discovery.aggregated(groups, path == "/api", media), content_type=media)
            if path == "/api":
                return json_response(discovery.api_versions(f"{server.host}:{server.port}"))
            return json_response(discovery.api_group_list(groups))
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api" and len(parts) == 2:
            if ("", parts[1]) not in groups:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return json_response(discovery.resource_list("", parts[1], groups[("", parts[1])]))
        if parts[0] == "apis" and len(parts) == 2:
            if not any(g == parts[1] for g, _ in groups):
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return json_response(discovery.api_group(groups, parts[1]))
        if parts[0] == "apis" and len(parts) == 3:
            if (parts[1], parts[2]) not in groups:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return json_response(discovery.resource_list(parts[1], parts[2], groups[(parts[1], parts[2])]))
        if parts[0] == "openapi":
            return openapi.serve(server, request, parts)
        return None

    @staticmethod
    def _verb(method: str, target: Target, request: web.Request) -> str:
        if method == "GET":
            if target.watch_prefix or (target.name is None and truthy(request.query.get("watch"))):
                return "watch"
            return "list" if target.name is None else "get"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "patch"
        if method == "DELETE":
            return "deletecollection" if target.name is None else "delete"
        raise method_not_allowed()

    async def _collection(self, request: web.Request, rt: ResourceType, namespace: str | None,
                          verb: str) -> web.StreamResponse:
        server = self.server
        if verb == "watch":
            return await serve_watch(server, request, rt, namespace)
        if verb == "list":
            q = request.query
            limit = None
            if q.get("limit"):
                try:
                    limit = int(q["limit"])
                except ValueError as e:
                    raise bad_request(f"invalid limit {q['limit']!r}: must be an integer") from e
                limit = limit if limit > 0 else None
            out = server.registry.list_objects(rt, namespace, q.get("labelSelector"), q.get("fieldSelector"), limit,
                                       q.get("continue"))
            return server.respond_object(request, rt, out, is_list=True)
        if rt.virtual:
            if verb != "create":
                raise method_not_allowed()
            data = await read_body(request)
            ctype = request.headers.get("Content-Type", "")
            review = {"spec": {}} if ctype.startswith(protobuf.PROTOBUF) else decode_object(data, ctype)
            if not isinstance(review, dict):
                raise bad_request("the body must be a JSON object")
            # every authenticated client is a cluster admin here (the kubeconfig's user is system:masters)
            review.update(apiVersion=rt.api_version, kind=rt.kind,
                          status={"allowed": True, "reason": "the emulator authorizes every authenticated request"})
            return json_response(review, 201)
        if verb == "create":
            if namespace is None and rt.namespaced:
                raise method_not_allowed("the server does not allow this method on the requested resource "
                                         "(create needs a namespace in the URL)")
            body = decode_object(await read_body(request), request.headers.get("Content-Type", ""))
            warnings: list[str] = []
            obj = await server.registry.create(rt, namespace or "", body, manager=_manager(request),
                                               dry_run=_dry_run(request),
                                               field_validation=request.query.get("fieldValidation"),
                                               warnings=warnings)
            return server.respond_object(request, rt, obj, status=201, warnings=warnings)
        if verb == "deletecollection":
            options = await self._delete_options(request)
            listed = server.registry.list_objects(rt, namespace, request.query.get("labelSelector"),
                                          request.query.get("fieldSelector"))
            dry = _dry_run(request)
            items = []
            for obj in listed["items"]:
                meta = obj["metadata"]
                try:
                    items.append(await server.registry.delete(rt, meta.get("namespace") or "", meta["name"],
                                                              options, dry_run=dry))
                except APIError as e:
                    if e.code != 404:
                        raise
            listed["items"] = items
            return json_response(listed)
        raise method_not_allowed()

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        data = await read_body(request)
        if data.strip():
            decoded = decode_object(data, request.headers.get("Content-Type", "") or "application/json")
            if not isinstance(decoded, dict):
                raise bad_request("DeleteOptions must be a JSON object")
            options.update(decoded)
        q = request.query
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "gracePeriodSeconds" in q:
            try:
                options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError as e:
                raise bad_request("gracePeriodSeconds must be an integer") from e
        if "orphanDependents" in q:
            options["orphanDependents"] = truthy(q["orphanDependents"])
        return options

    async def _item(self, request: web.Request, rt: ResourceType, namespace: str, name: str, verb: str
                    ) -> web.StreamResponse:
        server = self.server
        registry = server.registry
        warnings: list[str] = []
        fv = request.query.get("fieldValidation")
        if verb == "get":
            return server.respond_object(request, rt, registry.get(rt, namespace, name))
        if verb == "update":
            body = decode_object(await read_body(request), request.headers.get("Content-Type", ""))
            obj = await registry.update(rt, namespace, name, body, manager=_manager(request),
                                        dry_run=_dry_run(request), field_validation=fv, warnings=warnings)
            return server.respond_object(request, rt, obj, warnings=warnings)
        if verb == "patch":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in PATCH_TYPES:
                from .errors import unsupported_media_type

                raise unsupported_media_type(content_type)
            data = await read_body(request)
            manager = request.query.get("fieldManager") or (None if content_type.endswith("yaml")
                                                             else _manager(request))
            obj, created = await registry.patch(rt, namespace, name, content_type, data, manager=manager,
                                                force=truthy(request.query.get("force")), dry_run=_dry_run(request),
                                                field_validation=fv, warnings=warnings)
            return server.respond_object(request, rt, obj, status=201 if created else 200, warnings=warnings)
        if verb == "delete":
            options = await self._delete_options(request)
            obj = await registry.delete(rt, namespace, name, options, dry_run=_dry_run(request))
            meta = obj["metadata"]
            gone = server.store.get(rt.key, namespace if rt.namespaced else "", name) is None
            if gone and rt.crd is None and rt.key not in _RETURN_DELETED:
                # the real generic store answers a Status unless ReturnDeletedObject (pods, CRs, namespaces)
                return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                                  "uid": meta.get("uid")}})
            return server.respond_object(request, rt, obj)
        raise method_not_allowed()
