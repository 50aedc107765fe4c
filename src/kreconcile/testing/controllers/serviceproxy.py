"""A local address per Service port: a TCP proxy on 127.0.0.1 to a ready pod's process (LocalCluster's kube-proxy).

Each port of each Service gets a listener on ``127.0.0.1:<free port>`` for as long as the Service exists
(:meth:`ServiceProxy.address`). A connection goes to the next ready backend, round-robin: the backends are the
Service's Endpoints ``addresses`` (ready pods; whoever wrote them, our endpoints controller or a real
kube-controller-manager), each mapped through its ``targetRef`` and port to the local port the pod's kubelet
allocated; when the Endpoints have none (a real kube-apiserver refuses loopback addresses, so its endpoints
controller cannot list local pods), the Ready pods the Service's selector matches. No ready backend → the
connection is closed at once (like a Service without endpoints rejecting).

``type: LoadBalancer`` Services get ``status.loadBalancer.ingress: [{ip: 127.0.0.1}]`` (what a cloud load balancer
controller would write; the local address is :meth:`ServiceProxy.address`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import structlog

from kreconcile.builder import Builder, ManagerLike
from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.controller import Controller
from kreconcile.errors import NotFound, ignore_not_found
from kreconcile.labels import selector_from_labels
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import ENDPOINTS, POD, SERVICE, is_deleting, is_ready, with_kind
from kreconcile.testing.controllers.endpoints import resolve_target_port, services_selecting

log = structlog.get_logger("kreconcile.testing.serviceproxy")

PortLookup = Callable[[str, str, int], int | None]
"""``lookup(namespace, pod_name, container_port)`` → the pod's local port, or None (not on a local kubelet)."""


class _Listener:
    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.backends: list[int] = []
        self._rr = itertools.count()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            if not self.backends:
                return
            backends = list(self.backends)
            start = next(self._rr)
            for i in range(len(backends)):
                port = backends[(start + i) % len(backends)]
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
                return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._conns.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


class ServiceProxy:
    """The listeners of every Service port, kept in sync by :class:`ServiceProxyReconciler`."""

    def __init__(self, lookup: PortLookup) -> None:
        self.lookup = lookup
        self._listeners: dict[tuple[str, str, int], _Listener] = {}

    def address(self, namespace: str, name: str, port: int) -> tuple[str, int] | None:
        """``("127.0.0.1", local_port)`` for Service ``namespace/name`` port ``port``, or None if not (yet) proxied."""
        listener = self._listeners.get((namespace, name, port))
        return ("127.0.0.1", listener.port) if listener is not None else None

    def port_map(self) -> dict[tuple[str, str, int], tuple[str, int]]:
        """Every proxied ``(namespace, service, port)`` → local address (what ``kaito dev`` prints)."""
        return {k: ("127.0.0.1", v.port) for k, v in sorted(self._listeners.items())}

    def backends(self, namespace: str, name: str, port: int) -> list[int]:
        """The local ports connections to that Service port currently go to."""
        listener = self._listeners.get((namespace, name, port))
        return list(listener.backends) if listener is not None else []

    async def sync(self, service: dict[str, Any] | None, endpoints: dict[str, Any] | None,
                   namespace: str, name: str, pods: list[dict[str, Any]] | None = None) -> None:
        """Open/close listeners for the Service's ports and point them at its ready endpoints.

        When the Endpoints list no usable address, the Ready ``pods`` (those the Service's selector matches) are
        used instead: a real kube-apiserver refuses loopback Endpoints addresses, and every local pod is on
        127.0.0.1.
        """
        wanted: dict[int, dict[str, Any]] = {}
        if service is not None:
            for sp in (service.get("spec") or {}).get("ports") or []:
                if sp.get("protocol", "TCP") == "TCP":
                    wanted[int(sp["port"])] = sp
        for key in [k for k in self._listeners if k[0] == namespace and k[1] == name and k[2] not in wanted]:
            await self._listeners.pop(key).stop()
        for port, sp in wanted.items():
            key = (namespace, name, port)
            listener = self._listeners.get(key)
            if listener is None:
                listener = _Listener(key)
                await listener.start()
                self._listeners[key] = listener
                log.info("service_proxy_listening", namespace=namespace, name=name, port=port,
                         address=f"127.0.0.1:{listener.port}")
            listener.backends = self._backends(sp, endpoints, namespace) or self._pod_backends(sp, pods or [])

    def _backends(self, sp: dict[str, Any], endpoints: dict[str, Any] | None, namespace: str) -> list[int]:
        out: list[int] = []
        for subset in (endpoints or {}).get("subsets") or []:
            ports = subset.get("ports") or []
            match = next((p for p in ports if p.get("name") == sp.get("name")), None) if len(ports) > 1 else (
                ports[0] if ports else None)
            if match is None:
                continue
            for address in subset.get("addresses") or []:
                ref = address.get("targetRef") or {}
                if ref.get("kind") != "Pod":
                    continue
                local = self.lookup(ref.get("namespace") or namespace, ref.get("name", ""), int(match["port"]))
                if local is not None:
                    out.append(local)
        return out

    def _pod_backends(self, sp: dict[str, Any], pods: list[dict[str, Any]]) -> list[int]:
        out: list[int] = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            if not is_ready(pod) or is_deleting(pod):
                continue
            number = resolve_target_port(sp, pod)
            if number is None:
                continue
            local = self.lookup(pod["metadata"].get("namespace", ""), pod["metadata"]["name"], number)
            if local is not None:
                out.append(local)
        return out

    async def close(self) -> None:
        """Stop every listener."""
        for listener in list(self._listeners.values()):
            await listener.stop()
        self._listeners.clear()


class ServiceProxyReconciler:
    """Reconciles a Service's listeners from the Service and its Endpoints (both read from the cache)."""

    def __init__(self, cache: Cache, proxy: ServiceProxy, client: Client | None = None) -> None:
        self.cache = cache
        self.proxy = proxy
        self.client = client

    async def reconcile(self, request: Request) -> Result:
        namespace = request.namespace or "default"
        try:
            service = await self.cache.get(SERVICE, request.name, namespace)
        except NotFound:
            service = None
        try:
            endpoints = await self.cache.get(ENDPOINTS, request.name, namespace)
        except NotFound:
            endpoints = None
        if service is not None and self.client is not None:
            await self._load_balancer_status(service)
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        pods: list[dict[str, Any]] = []
        if selector:
            matcher = selector_from_labels({str(k): str(v) for k, v in selector.items()})
            pods = [p for p in await self.cache.list(POD, namespace)
                    if matcher.matches((p.get("metadata") or {}).get("labels") or {})]
        await self.proxy.sync(service, endpoints, namespace, request.name, pods)
        ports = ((service or {}).get("spec") or {}).get("ports") or []
        listed = any(s.get("addresses") for s in (endpoints or {}).get("subsets") or [])
        if ports and not self.proxy.backends(namespace, request.name, int(ports[0]["port"])) and (
            listed or any(is_ready(p) for p in pods)
        ):
            return Result(requeue_after=0.5)  # ready pods whose local port is not known (or not ready) yet
        return Result()


    async def _load_balancer_status(self, service: dict[str, Any]) -> None:
        if (service.get("spec") or {}).get("type") != "LoadBalancer":
            return
        if ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            return
        assert self.client is not None
        await ignore_not_found(self.client.status().patch(
            with_kind(service, SERVICE), {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}))


def setup_service_proxy(
    manager: ManagerLike, cache: Cache, proxy: ServiceProxy, client: Client | None = None
) -> Controller:
    """Register the proxy controller: ``for_`` Service, Endpoints of the same name and selected Pods mapped to it.

    With ``client``, LoadBalancer Services also get their loopback ingress status.
    """
    return (
        Builder(manager)
        .named("localcluster-serviceproxy")
        .for_(SERVICE)
        .watches(ENDPOINTS, lambda ep: [Request.for_object(ep)])
        .watches(POD, lambda pod: services_selecting(cache, pod))
        .with_options(needs_leader_election=False, skip_name_validation=True)
        .complete(ServiceProxyReconciler(cache, proxy, client))
    )
