"""The admission webhook over HTTPS: a thin aiohttp shell around :mod:`kaito.webhook.rules` and
:mod:`kaito.webhook.defaulting`, speaking ``admission.k8s.io/v1`` ``AdmissionReview``.

Endpoints: ``POST /validate`` (ValidatingWebhookConfiguration), ``POST /mutate`` (MutatingWebhookConfiguration,
JSONPatch), ``GET /healthz``. TLS material is read from a cert dir (``tls.crt``, ``tls.key``: what a Secret of
type kubernetes.io/tls mounts) and reloaded when the files change, so cert-manager rotations need no restart.
The server makes no network calls: the bring-your-own node list, if any, comes from a callable (e.g. the
operator's informer cache).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kaito.api import constants as c
from kaito.presets.catalog import Catalog, load_catalog
from kaito.webhook.defaulting import default_patch
from kaito.webhook.rules import validate_workspace
from kaito.webhook.ssrf import Resolver

log = structlog.get_logger("kaito.webhook")

ADMISSION_API_VERSION = "admission.k8s.io/v1"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
DEFAULT_PORT = 9443
"""Upstream Kaito's webhook port."""
DEFAULT_RELOAD_INTERVAL = 10.0
"""Seconds between checks of the cert dir for rotated files."""
MAX_BODY_BYTES = 3 * 1024 * 1024
"""AdmissionReview bodies above 3 MiB (the API server's own request limit) are refused with 413."""

NodeLister = Callable[[], Sequence[Mapping[str, Any]]]


class WebhookMetrics:
    """controller-runtime's webhook metrics (same names and labels, so its dashboards work), on ``registry``:
    ``controller_runtime_webhook_requests_total{code, webhook}``, ``controller_runtime_webhook_latency_seconds
    {webhook}`` and ``controller_runtime_webhook_requests_in_flight{webhook}``; ``webhook`` is the path."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "controller_runtime_webhook_requests_total",
            "Total number of admission requests by HTTP status code.",
            ["code", "webhook"],
            registry=registry,
        )
        self.latency = Histogram(
            "controller_runtime_webhook_latency_seconds",
            "Histogram of the latency of processing admission requests",
            ["webhook"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "controller_runtime_webhook_requests_in_flight",
            "Current number of admission requests being served.",
            ["webhook"],
            registry=registry,
        )


class CertReloader:
    """An ``ssl.SSLContext`` serving ``cert_dir/tls.crt`` + ``tls.key``, reloaded by :meth:`check` on change.

    Raises (constructor):
        FileNotFoundError / ssl.SSLError: the files are missing or not a matching PEM cert and key.
    """

    def __init__(self, cert_dir: Path) -> None:
        self.cert_dir = Path(cert_dir)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._current_stamp()
        self.context.load_cert_chain(self.cert_dir / CERT_FILE, self.cert_dir / KEY_FILE)

    def _current_stamp(self) -> bytes:
        # a content digest, not mtimes: a rotation within the filesystem's timestamp granularity is still seen
        digest = hashlib.sha256()
        for name in (CERT_FILE, KEY_FILE):
            digest.update((self.cert_dir / name).read_bytes())
        return digest.digest()

    def check(self) -> bool:
        """Reload the pair if either file changed; True when new material is in use for new connections.

        A half-written or mismatched pair is logged and ignored (the old certificate keeps serving) and retried
        on the next check.
        """
        try:
            stamp = self._current_stamp()
        except OSError as exc:
            log.warning("webhook_cert_missing", cert_dir=str(self.cert_dir), error=str(exc))
            return False
        if stamp == self._stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert_dir / CERT_FILE, self.cert_dir / KEY_FILE)
        except (OSError, ssl.SSLError) as exc:
            log.warning("webhook_cert_reload_failed", cert_dir=str(self.cert_dir), error=str(exc))
            return False
        self._stamp = stamp
        log.info("webhook_cert_reloaded", cert_dir=str(self.cert_dir))
        return True


def _review(uid: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": {"uid": uid, **response}}


class WebhookServer:
    """The admission webhook server; an async context manager (or ``await start()`` / ``await stop()``).

    Args:
        cert_dir: directory with ``tls.crt`` and ``tls.key``; None serves plain HTTP (tests and local dev only).
        host: bind address (default 127.0.0.1).
        port: TCP port; 0 picks a free one (see :attr:`port` after start). Default 9443 (upstream).
        catalog: presets and SKUs (default: the packaged catalog).
        auto_provisioning: False when kaito runs without a node provisioner (every workspace is BYO).
        nodes: callable returning the current Node dicts for BYO checks (e.g. from an informer cache).
        resolve: optional DNS resolver for the SSRF guard (default none: no network calls).
        reload_interval: seconds between cert-dir checks.
        registry: Prometheus registry for :class:`WebhookMetrics` (e.g. ``kreconcile.metrics.REGISTRY``); None
            records no metrics.
    """

    def __init__(
        self,
        *,
        cert_dir: Path | None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        catalog: Catalog | None = None,
        auto_provisioning: bool = True,
        nodes: NodeLister | None = None,
        resolve: Resolver | None = None,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.metrics = WebhookMetrics(registry) if registry is not None else None
        self.host = host
        self.port = port
        self.catalog = catalog or load_catalog()
        self.auto_provisioning = auto_provisioning
        self.nodes = nodes
        self.resolve = resolve
        self.reload_interval = reload_interval
        self.certs = CertReloader(cert_dir) if cert_dir is not None else None
        self._runner: web.AppRunner | None = None
        self._reload_task: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        """The aiohttp application (routes only; usable with aiohttp's test client)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._measure])
        app.router.add_post("/validate", self._validate)
        app.router.add_post("/mutate", self._mutate)
        app.router.add_get("/healthz", self._healthz)
        return app

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:9443``."""
        scheme = "https" if self.certs is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; starts the cert reload loop."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.certs.context if self.certs else None)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        if self.certs is not None:
            self._reload_task = asyncio.create_task(self._reload_loop())
        log.info("webhook_started", url=self.url)

    async def stop(self) -> None:
        """Stop serving and the reload loop."""
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
            self._reload_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @web.middleware
    async def _measure(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.metrics is None or request.path == "/healthz":
            response: web.StreamResponse = await handler(request)
            return response
        path = request.path
        self.metrics.in_flight.labels(path).inc()
        loop = asyncio.get_running_loop()
        start = loop.time()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            self.metrics.in_flight.labels(path).dec()
            self.metrics.latency.labels(path).observe(loop.time() - start)
            self.metrics.requests.labels(str(code), path).inc()

    async def _reload_loop(self) -> None:
        assert self.certs is not None
        while True:
            await asyncio.sleep(self.reload_interval)
            self.certs.check()

    async def _read_request(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            return None, web.json_response(
                {"error": "body is not JSON; send an admission.k8s.io/v1 AdmissionReview"}, status=400
            )
        req = body.get("request") if isinstance(body, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("uid"), str):
            return None, web.json_response(
                {"error": "request.uid is missing; send an admission.k8s.io/v1 AdmissionReview"},
                status=400,
            )
        return req, None

    async def _validate(self, request: web.Request) -> web.Response:
        req, bad = await self._read_request(request)
        if req is None:
            assert bad is not None
            return bad
        uid, operation = req["uid"], req.get("operation")
        if operation not in ("CREATE", "UPDATE"):
            return web.json_response(_review(uid, {"allowed": True}))
        obj = req.get("object")
        old = req.get("oldObject") if operation == "UPDATE" else None
        nodes = None
        if self.nodes is not None:
            try:
                nodes = list(self.nodes())
            except Exception as exc:  # a cache problem must not turn into a 500
                log.warning("webhook_node_list_failed", error=str(exc))
        verdict = validate_workspace(
            obj,
            old,
            nodes=nodes,
            catalog=self.catalog,
            auto_provisioning=self.auto_provisioning,
            resolve=self.resolve,
        )
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        log.info(
            "webhook_validated",
            uid=uid,
            operation=operation,
            name=name,
            allowed=verdict.allowed,
            errors=len(verdict.errors),
        )
        response: dict[str, Any] = {"allowed": verdict.allowed}
        if verdict.warnings:
            response["warnings"] = list(verdict.warnings)
        if not verdict.allowed:
            response["status"] = {
                "status": "Failure",
                "code": 422,
                "reason": "Invalid",
                "message": verdict.message(),
                "details": {
                    "name": name or "",
                    "group": c.GROUP,
                    "kind": c.WORKSPACE_KIND,
                    "causes": [
                        {"type": "FieldValueInvalid", "field": e.path, "message": e.message} for e in verdict.errors
                    ],
                },
            }
        return web.json_response(_review(uid, response))

    async def _mutate(self, request: web.Request) -> web.Response:
        req, bad = await self._read_request(request)
        if req is None:
            assert bad is not None
            return bad
        uid = req["uid"]
        response: dict[str, Any] = {"allowed": True}
        if req.get("operation") in ("CREATE", "UPDATE"):
            ops = default_patch(req.get("object"))
            if ops:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        return web.json_response(_review(uid, response))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")
