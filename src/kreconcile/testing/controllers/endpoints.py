"""Service → Endpoints (and EndpointSlices when the server serves ``discovery.k8s.io/v1``).

As the endpoints and endpointslice controllers: for a Service with a ``selector``, every pod of its namespace that
matches, has a ``podIP`` and is not terminal becomes an address — in ``addresses`` when Ready, else in
``notReadyAddresses`` — with ``nodeName``, a ``targetRef`` to the pod and ``hostname`` when the pod's
``spec.subdomain`` is the Service's name. Ports are the Services' ``targetPort`` (a named target port is resolved
against the pod's container ports). Services without a selector are left alone (their Endpoints are the user's).
The EndpointSlice is named ``<service>-<hash>``, labelled ``kubernetes.io/service-name`` and
``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``, owned by the Service.

(``type: LoadBalancer`` status is the Service proxy's job: :mod:`kreconcile.testing.controllers.serviceproxy`.)
"""

from __future__ import annotations

from typing import Any

from kreconcile.builder import Builder, ManagerLike
from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.controller import Controller
from kreconcile.errors import AlreadyExists, NoKindMatchError, NotFound, ignore_not_found
from kreconcile.labels import selector_from_labels
from kreconcile.ownerrefs import set_controller_reference
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import (
    ENDPOINT_SLICE,
    ENDPOINTS,
    POD,
    SERVICE,
    is_deleting,
    is_ready,
    is_terminal,
    name_of,
    safe_hash,
    with_kind,
)

MANAGED_BY = "endpointslice-controller.k8s.io"


def resolve_target_port(service_port: dict[str, Any], pod: dict[str, Any] | None) -> int | None:
    """A Service port's ``targetPort`` as a number (named ports looked up in ``pod``'s containers)."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def _address(pod: dict[str, Any], service_name: str) -> dict[str, Any]:
    meta = pod["metadata"]
    address: dict[str, Any] = {
        "ip": (pod.get("status") or {}).get("podIP"),
        "nodeName": (pod.get("spec") or {}).get("nodeName"),
        "targetRef": {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta.get("name"),
                      "uid": meta.get("uid")},
    }
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == service_name:
        address["hostname"] = spec["hostname"]
    return address


def endpoints_for(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``subsets`` of the Service's Endpoints given the candidate ``pods`` (already selector-matched)."""
    name = name_of(service)
    members = [p for p in pods if (p.get("status") or {}).get("podIP") and not is_terminal(p)]
    ready = [_address(p, name) for p in members if is_ready(p) and not is_deleting(p)]
    not_ready = [_address(p, name) for p in members if not (is_ready(p) and not is_deleting(p))]
    if not ready and not not_ready:
        return []
    ports = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = resolve_target_port(sp, members[0] if members else None)
        if number is None:
            continue
        port = {"port": number, "protocol": sp.get("protocol", "TCP")}
        if sp.get("name"):
            port["name"] = sp["name"]
        ports.append(port)
    subset: dict[str, Any] = {"ports": ports}
    if ready:
        subset["addresses"] = sorted(ready, key=lambda a: a["targetRef"]["name"])
    if not_ready:
        subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: a["targetRef"]["name"])
    return [subset]


def endpoint_slice_for(service: dict[str, Any], subsets: list[dict[str, Any]]) -> dict[str, Any]:
    """The Service's EndpointSlice (one slice; IPv4) built from its Endpoints ``subsets``."""
    endpoints = []
    ports: list[dict[str, Any]] = []
    for subset in subsets:
        ports = [dict(p) for p in subset.get("ports") or []]
        for ready_key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(ready_key) or []:
                endpoint: dict[str, Any] = {
                    "addresses": [address["ip"]],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    "nodeName": address.get("nodeName"),
                    "targetRef": address["targetRef"],
                }
                if address.get("hostname"):
                    endpoint["hostname"] = address["hostname"]
                endpoints.append(endpoint)
    name = name_of(service)
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-{safe_hash(name, 5)}",
            "namespace": service["metadata"]["namespace"],
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }
    set_controller_reference(service, slice_)
    return slice_


class EndpointsReconciler:
    """Writes the Endpoints (and EndpointSlice) of one Service from the pods its selector matches."""

    def __init__(self, client: Client, cache: Cache) -> None:
        self.client = client
        self.cache = cache
        self._slices_served: bool | None = None

    async def reconcile(self, request: Request) -> Result:
        try:
            service = with_kind(await self.cache.get(SERVICE, request.name, request.namespace), SERVICE)
        except NotFound:
            await ignore_not_found(self.client.delete(
                {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": request.name, "namespace": request.namespace}}))
            return Result()
        spec = service.get("spec") or {}
        selector = spec.get("selector")
        if not selector:
            return Result()
        matcher = selector_from_labels({str(k): str(v) for k, v in selector.items()})
        pods = [p for p in await self.cache.list(POD, request.namespace)
                if matcher.matches((p.get("metadata") or {}).get("labels") or {})]
        subsets = endpoints_for(service, pods)
        desired = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name_of(service), "namespace": request.namespace,
                         "labels": dict((service.get("metadata") or {}).get("labels") or {})},
            "subsets": subsets,
        }
        await self._upsert(ENDPOINTS, desired, ("subsets",))
        if await self._serves_slices():
            await self._upsert(ENDPOINT_SLICE, endpoint_slice_for(service, subsets), ("endpoints", "ports"))
        return Result()

    async def _serves_slices(self) -> bool:
        if self._slices_served is None:
            try:
                await self.client.mapping(ENDPOINT_SLICE)
                self._slices_served = True
            except NoKindMatchError:
                self._slices_served = False
        return self._slices_served

    async def _upsert(self, gvk: Any, desired: dict[str, Any], fields: tuple[str, ...]) -> None:
        meta = desired["metadata"]
        try:
            current = await self.cache.get(gvk, meta["name"], meta["namespace"])
        except NotFound:
            try:
                await self.client.create(desired)
                return
            except AlreadyExists:
                current = await self.client.get(gvk, meta["name"], meta["namespace"])
        if all(current.get(f) == desired.get(f) or (not current.get(f) and not desired.get(f)) for f in fields):
            return
        await ignore_not_found(self.client.patch(with_kind(current, gvk), {f: desired.get(f) for f in fields}))


def services_selecting(cache: Cache, pod: dict[str, Any]) -> list[Request]:
    """The Services of the pod's namespace whose selector matches its labels (a watch map function)."""
    namespace = (pod.get("metadata") or {}).get("namespace")
    labels = (pod.get("metadata") or {}).get("labels") or {}
    informer = cache.get_informer(SERVICE)
    out = []
    for svc in informer.list():
        meta = svc.get("metadata") or {}
        selector = (svc.get("spec") or {}).get("selector") or {}
        if meta.get("namespace") == namespace and selector and all(labels.get(k) == v for k, v in selector.items()):
            out.append(Request(namespace, meta["name"]))
    return out


def setup_endpoints_controller(manager: ManagerLike, client: Client, cache: Cache) -> Controller:
    """Register the endpoints controller (``for_`` Service, pods mapped to the Services selecting them)."""
    return (
        Builder(manager)
        .named("localcluster-endpoints")
        .for_(SERVICE)
        .watches(POD, lambda pod: services_selecting(cache, pod))
        .with_options(needs_leader_election=False, skip_name_validation=True)
        .complete(EndpointsReconciler(client, cache))
    )
