"""Subresources: ``status``, ``scale`` (Deployments, StatefulSets, ReplicaSets, CRDs with a scale
subresource), ``pods/binding`` (the scheduler's bind), ``pods/log``, ``pods/eviction`` and
``namespaces/finalize``.

``pods/log`` streams from the provider set with :meth:`APIServer.set_pod_log_provider` (the local kubelet); with
none, it answers like the real server: 204 No Content for an unscheduled pod, 400 when a multi-container pod's
``container`` is not given or unknown, and 500 when no kubelet serves the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import objects
from .errors import APIError, bad_request, conflict, method_not_allowed, not_found
from .resources import ResourceType

if TYPE_CHECKING:
    from .server import APIServer


def _get_path(obj: Any, path: str) -> Any:
    cur = obj
    for part in [p for p in path.split(".") if p]:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = [p for p in path.split(".") if p]
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _scale_paths(rt: ResourceType) -> dict[str, str]:
    if rt.scale_paths:
        return rt.scale_paths
    return {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector"}


def to_scale(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale view of a scalable object."""
    paths = _scale_paths(rt)
    meta = obj["metadata"]
    selector = _get_path(obj, paths.get("labelSelectorPath", "")) if paths.get("labelSelectorPath") else None
    if rt.crd is None:
        sel = (obj.get("spec") or {}).get("selector") or {}
        selector = ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items())
    status: dict[str, Any] = {"replicas": int(_get_path(obj, paths.get("statusReplicasPath", "")) or 0)}
    if selector:
        status["selector"] = selector
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": int(_get_path(obj, paths["specReplicasPath"]) or 0)}, "status": status}


async def handle(server: APIServer, request: web.Request, rt: ResourceType, namespace: str, name: str,
                 sub: str) -> web.StreamResponse:
    """Serve ``{resource}/{name}/{sub}``."""
    if sub not in rt.subresources:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    from .handlers import _dry_run, _manager, decode_object, read_body

    registry = server.registry
    method = request.method
    if sub == "status":
        if method == "GET":
            return server.respond_object(request, rt, registry.get(rt, namespace, name))
        warnings: list[str] = []
        if method == "PUT":
            body = decode_object(await read_body(request), request.headers.get("Content-Type", ""))
            obj = await registry.update(rt, namespace, name, body, subresource="status", manager=_manager(request),
                                        dry_run=_dry_run(request), warnings=warnings)
            return server.respond_object(request, rt, obj, warnings=warnings)
        if method == "PATCH":
            ct = request.headers.get("Content-Type", "").split(";")[0].strip()
            manager = request.query.get("fieldManager") or (None if ct.endswith("yaml") else _manager(request))
            obj, _ = await registry.patch(rt, namespace, name, ct, await read_body(request), subresource="status",
                                          manager=manager, force=request.query.get("force") in ("true", "1"),
                                          dry_run=_dry_run(request), warnings=warnings)
            return server.respond_object(request, rt, obj, warnings=warnings)
        raise method_not_allowed()
    if sub == "scale":
        current = registry.get(rt, namespace, name)
        if method == "GET":
            return _json(to_scale(rt, current))
        if method == "PUT":
            scale = decode_object(await read_body(request), request.headers.get("Content-Type", ""))
        elif method == "PATCH":
            from .patch import apply_patch

            ct = request.headers.get("Content-Type", "").split(";")[0].strip()
            fake = ResourceType("autoscaling", "v1", "scale", "scale", "Scale", rt.namespaced)
            scale = apply_patch(fake, to_scale(rt, current), ct, await read_body(request))
        else:
            raise method_not_allowed()
        replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
        if not isinstance(replicas, int) or replicas < 0:
            raise APIError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                           f"{replicas}: must be greater than or equal to 0",
                           {"causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                        "message": "must be greater than or equal to 0"}]})
        wanted = (scale.get("metadata") or {}).get("resourceVersion")
        path = _scale_paths(rt)["specReplicasPath"]

        def build(cur: dict[str, Any]) -> dict[str, Any]:
            _set_path(cur, path, replicas)
            return cur

        obj = await registry._write(rt, namespace, name, build, wanted, subresource=None, manager=_manager(request),
                                    dry_run=_dry_run(request), field_validation=None, warnings=None,
                                    retry=not wanted)
        return _json(to_scale(rt, obj))
    if sub == "binding":
        if method != "POST":
            raise method_not_allowed()
        binding = decode_object(await read_body(request), request.headers.get("Content-Type", ""))
        node = ((binding or {}).get("target") or {}).get("name") if isinstance(binding, dict) else None
        if not node:
            raise APIError(422, "Invalid", 'Binding "" is invalid: target.name: Required value',
                           {"causes": [{"reason": "FieldValueRequired", "field": "target.name",
                                        "message": "Required value"}]})
        pod = server.store.get(rt.key, namespace, name)
        if pod is None:
            raise not_found("pods", "", name)
        if pod["metadata"].get("deletionTimestamp"):
            raise conflict("pods", "", name, "pod is being deleted, cannot be assigned to a host")
        if (pod.get("spec") or {}).get("nodeName"):
            raise conflict("pods", "", name, f"pod {name} is already assigned to node "
                           f'"{pod["spec"]["nodeName"]}"')

        def bind(new: dict[str, Any]) -> None:
            new["spec"]["nodeName"] = node
            conditions = new.setdefault("status", {}).setdefault("conditions", [])
            conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": objects.rfc3339(server.clock.wall())})

        registry.system_update(rt, pod, bind)
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                     201)
    if sub == "eviction":
        if method != "POST":
            raise method_not_allowed()
        await registry.delete(rt, namespace, name, {})
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
                     201)
    if sub == "finalize":
        if method != "PUT":
            raise method_not_allowed()
        body = decode_object(await read_body(request), request.headers.get("Content-Type", ""))
        finalizers = list(((body or {}).get("spec") or {}).get("finalizers") or [])
        stored = server.store.get(rt.key, "", name)
        if stored is None:
            raise not_found(rt.plural, rt.group, name)

        def finalize(new: dict[str, Any]) -> None:
            new.setdefault("spec", {})["finalizers"] = finalizers

        return server.respond_object(request, rt, registry.system_update(rt, stored, finalize))
    if sub == "log":
        return await _logs(server, request, namespace, name)
    raise APIError(404, "NotFound", "the server could not find the requested resource")


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    from .handlers import json_response

    return json_response(body, status)


async def _logs(server: APIServer, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
    pod = server.store.get(("", "pods"), namespace, name)
    if pod is None:
        raise not_found("pods", "", name)
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    container = request.query.get("container")
    if not container:
        if len(containers) != 1:
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                              f"[{' '.join(str(c) for c in containers)}]")
        container = str(containers[0])
    elif container not in containers and container not in [
            c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        # the real LogLocation returns no location for an unscheduled pod: 204 No Content
        return web.Response(status=204)
    provider = server.pod_log_provider
    if provider is None:
        raise APIError(500, "InternalError", f'Get "https://{node}:10250/containerLogs/{namespace}/{name}/'
                       f'{container}": no kubelet serves node {node} (set_pod_log_provider was not called)')
    follow = request.query.get("follow") in ("true", "1", "True")
    tail = request.query.get("tailLines")
    try:
        tail_lines = int(tail) if tail else None
    except ValueError as e:
        raise bad_request("tailLines must be an integer") from e
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    stream = provider(namespace, name, container, follow, tail_lines)
    prepared = False
    try:
        async for chunk in stream:
            if not prepared:
                await resp.prepare(request)
                prepared = True
            await resp.write(chunk)
    except APIError:
        if not prepared:
            raise
    except ConnectionResetError:
        return resp
    if not prepared:
        await resp.prepare(request)
    await resp.write_eof()
    return resp
