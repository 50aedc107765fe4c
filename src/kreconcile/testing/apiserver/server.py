""":class:`APIServer`: the emulator's lifecycle (listener, TLS, kubeconfig, in-server controllers)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from kreconcile.clock import Clock, RealClock

from . import table, tls
from .admission import ServiceResolver, WebhookCaller
from .crd import types_from_crd
from .faults import Faults
from .gc import GarbageCollector
from .handlers import Router, json_response
from .registry import Registry
from .resources import ResourceType
from .storage import Store

PodLogProvider = Callable[[str, str, str, bool, int | None], AsyncIterator[bytes]]
"""``(namespace, pod, container, follow, tail_lines) -> async iterator of log bytes`` (the local kubelet)."""

_BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class APIServer:
    """A Kubernetes API server emulator on ``host:port`` (reference: apiserver-semantics.md, items 1-12).

    Args:
        host: listen address; 127.0.0.1 (loopback only) by default.
        port: 0 picks a free port (read :attr:`port` / :attr:`url` after start).
        tls: HTTPS with a generated self-signed CA and a bearer token (what real clusters do); False serves
            plain HTTP, still with the token.
        data_dir: persist objects there (restarts keep them) and keep the PKI and kubeconfig there; None uses a
            temporary directory removed on stop.
        watch_window: events retained per resource for watch resume; a watch from an older resourceVersion gets
            410 Expired. 1000 keeps several minutes of a busy controller's history.
        bookmark_interval: seconds (of ``clock``) between BOOKMARK events on watches that allow them; the real
            server sends them about once a minute.
        clock: time source for timestamps, watch timeouts and bookmarks (FakeClock in tests).
        token: the bearer token clients must send; generated when None.

    Use ``async with APIServer() as server:`` or ``await server.start()`` / ``await server.stop()``.

    After start: ``url``, ``port``, ``kubeconfig_path`` (kubectl and kubernetes-asyncio accept it), ``token``,
    ``ca_path`` (None with ``tls=False``). Always: ``faults`` (:class:`~.faults.Faults`), ``store`` and
    ``registry`` (the state and REST rules, for white-box assertions), ``service_resolver`` (webhook service
    references), :meth:`set_pod_log_provider`. The garbage collector, namespace controller and CRD cleanup run
    inside (see docs/conformance.md).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: bool = True, data_dir: Path | None = None,
                 watch_window: int = 1000, bookmark_interval: float = 60.0, clock: Clock | None = None,
                 token: str | None = None) -> None:
        if bookmark_interval <= 0:
            raise ValueError("bookmark_interval must be > 0 seconds")
        self.host = host
        self.port = port
        self.tls = tls
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.bookmark_interval = bookmark_interval
        self.clock: Clock = clock or RealClock()
        self.token: str = token or tls_token()
        self.store = Store(window=watch_window)
        self.registry = Registry(self.store, self.clock)
        self.registry.on_crd_change = self._on_crd_change
        self.faults = Faults(self.store)
        self.webhooks = WebhookCaller(self.registry)
        self.registry.admission = self.webhooks
        self.registry.mutation = self.webhooks.mutate
        self.pod_log_provider: PodLogProvider | None = None
        self.kubeconfig_path: Path = Path()
        self.ca_path: Path | None = None
        self._workdir: Path | None = None
        self._tmp: str | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._persistence: Any = None
        self.gc: GarbageCollector | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>`` (or http)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def start(self) -> APIServer:
        """Load persisted objects, bootstrap namespaces, listen, and write the kubeconfig."""
        if self.data_dir is not None:
            self._workdir = self.data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
            from .persistence import Persistence

            self._persistence = Persistence(self.data_dir / "objects")
            self._persistence.load(self.store, self.registry)
            self.store.listeners.append(self._persistence.on_event)
        else:
            self._tmp = tempfile.mkdtemp(prefix="kreconcile-apiserver-")
            self._workdir = Path(self._tmp)
        from .events_bridge import EventsBridge

        self.store.listeners.append(EventsBridge(self.store).on_event)
        await self._bootstrap()
        self.store.start_rv = self.store.rv
        self.gc = GarbageCollector(self.registry)
        self._tasks.append(asyncio.create_task(self.gc.run()))
        ssl_ctx = None
        if self.tls:
            certs = tls.generate_certs(self._workdir / "pki")
            self.ca_path = certs.ca_path
            ssl_ctx = certs.server_context()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        router = Router(self)
        app.router.add_route("*", "/{tail:.*}", router.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_ctx, backlog=2048)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        self.kubeconfig_path = tls.write_kubeconfig(self._workdir / "kubeconfig", self.url, self.token, self.ca_path)
        return self

    async def stop(self) -> None:
        """Close watches and the listener, stop the controllers, flush persistence, remove temporary files."""
        self.store.close_watchers()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._persistence is not None:
            self._persistence.snapshot(self.store)
            self._persistence.close()
            self._persistence = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def __aenter__(self) -> APIServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _bootstrap(self) -> None:
        ns_rt = self.registry.lookup("", "v1", "namespaces")
        for name in _BOOTSTRAP_NAMESPACES:
            if self.store.get(ns_rt.key, "", name) is None:
                await self.registry.create(ns_rt, "", {"metadata": {"name": name}}, manager="kube-apiserver")
        for crd in self.store.items(("apiextensions.k8s.io", "customresourcedefinitions")):
            self._on_crd_change(None, crd)
        svc_rt = self.registry.lookup("", "v1", "services")
        if self.store.get(svc_rt.key, "default", "kubernetes") is None:
            await self.registry.create(svc_rt, "default", {
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}], "clusterIP": "10.96.0.1"},
            }, manager="kube-apiserver")

    # ---- hooks -------------------------------------------------------------------------------------------
    def set_pod_log_provider(self, provider: PodLogProvider | None) -> None:
        """Serve ``pods/log`` from ``provider`` (the local kubelet); None restores the no-kubelet errors."""
        self.pod_log_provider = provider

    @property
    def service_resolver(self) -> ServiceResolver | None:
        """Maps a webhook's ``clientConfig.service`` (namespace, name, port) to a base URL; None means
        ``https://<name>.<namespace>.svc:<port>`` (resolvable only where cluster DNS exists)."""
        return self.webhooks.service_resolver

    @service_resolver.setter
    def service_resolver(self, resolver: ServiceResolver | None) -> None:
        self.webhooks.service_resolver = resolver

    def _on_crd_change(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        source = new or old
        if source is None:
            return
        spec = source.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        self.registry.unregister(group, plural)
        if new is not None:
            for rt in types_from_crd(new):
                self.registry.register(rt)

    # ---- responses ---------------------------------------------------------------------------------------
    def renderer(self, request: web.Request, rt: ResourceType) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """How watch events' objects are rendered for this request (plain object, or a one-row Table)."""
        table_version = table.wants_table(request.headers.get("Accept", ""))
        include = request.query.get("includeObject", "Metadata")
        if table_version is None:
            return lambda obj: self.registry.present(rt, obj)
        first = [True]

        def render(obj: dict[str, Any]) -> dict[str, Any]:
            out = table.to_table(rt, [self.registry.present(rt, obj)],
                                 {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                 self.clock.wall(), include, headers=first[0], api_version=table_version)
            first[0] = False
            return out

        return render

    def respond_object(self, request: web.Request, rt: ResourceType, obj: dict[str, Any], status: int = 200,
                       warnings: list[str] | None = None, is_list: bool = False) -> web.Response:
        """Answer ``obj`` (an object or a list) as JSON, or as a Table when the client asks for one."""
        headers = {}
        if warnings:
            quoted = (w.replace("\\", "\\\\").replace('"', '\\"') for w in warnings[:20])
            headers["Warning"] = ", ".join(f'299 - "{w}"' for w in quoted)
        table_version = table.wants_table(request.headers.get("Accept", ""))
        if table_version is not None and status < 300:
            include = request.query.get("includeObject", "Metadata")
            items = obj["items"] if is_list else [obj]
            meta = obj["metadata"] if is_list else {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            body = table.to_table(rt, items, meta, self.clock.wall(), include, api_version=table_version)
            return json_response(body, status, headers)
        return json_response(obj, status, headers)


def tls_token() -> str:
    """A fresh bearer token."""
    return tls.new_token()
