"""Health probes (``/healthz``, ``/readyz`` with named checks) and the Prometheus ``/metrics`` endpoint, served
with aiohttp.

Output follows Kubernetes' and controller-runtime's healthz handlers so existing probes and humans read it the
same way:

* ``GET /readyz`` → 200 ``ok`` when every check passes, else 500 with one line per check
  (``[+]ping ok`` / ``[-]informers failed: reason withheld``) and ``readyz check failed``;
* ``?verbose`` lists every check even on success, ending with ``readyz check passed``;
* ``?exclude=name`` (repeatable) skips a check;
* ``GET /readyz/<name>`` runs one check: 200 ``ok`` or 500 ``internal server error: <error>``; unknown → 404.

A check is a callable taking no arguments (sync or async) that raises (or returns False) when unhealthy.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = structlog.get_logger("kreconcile.healthz")

Check = Callable[[], Any]
"""A health check: raises or returns False when unhealthy; may be ``async``."""


def ping() -> None:
    """The always-passing check (controller-runtime's ``healthz.Ping``)."""


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """``":8080"`` → ``("0.0.0.0", 8080)``, ``"127.0.0.1:0"`` → ephemeral port on loopback, ``"0"`` or ``""`` →
    None (disabled), as controller-runtime's ``BindAddress`` options.

    Raises:
        ValueError: not ``host:port`` with a numeric port.
    """
    if address in ("", "0"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bind address {address!r} must look like ':8080' or '127.0.0.1:8081' (or '0' to disable)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


async def run_check(check: Check) -> None:
    """Run ``check``; raise if it fails (a False return becomes ``RuntimeError("check returned False")``)."""
    result = check()
    if inspect.isawaitable(result):
        result = await result
    if result is False:
        raise RuntimeError("check returned False")


class _Checks:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.checks: dict[str, Check] = {}

    async def handle_all(self, request: web.Request) -> web.Response:
        exclude = set(request.query.getall("exclude", []))
        verbose = "verbose" in request.query
        lines, failed = [], False
        for name, check in self.checks.items():
            if name in exclude:
                continue
            try:
                await run_check(check)
                lines.append(f"[+]{name} ok")
            except Exception as err:
                failed = True
                lines.append(f"[-]{name} failed: reason withheld")
                log.info("health check failed", probe=self.kind, check=name, error=str(err))
        if failed:
            return web.Response(status=500, text="\n".join([*lines, f"{self.kind} check failed", ""]))
        if verbose:
            return web.Response(text="\n".join([*lines, f"{self.kind} check passed", ""]))
        return web.Response(text="ok")

    async def handle_one(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        check = self.checks.get(name)
        if check is None:
            return web.Response(status=404, text=f"{self.kind} check {name!r} not found\n")
        try:
            await run_check(check)
        except Exception as err:
            return web.Response(status=500, text=f"internal server error: {err}\n")
        return web.Response(text="ok")


class HTTPServer:
    """A small aiohttp server bound to one address; :attr:`port` is the bound port after :meth:`start`."""

    def __init__(self, app: web.Application, host: str, port: int, name: str) -> None:
        self.app, self.host, self.port, self.name = app, host, port, name
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (loopback when bound to all interfaces)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve (returns once listening).

        Raises:
            OSError: the address is in use or not available.
        """
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("serving", server=self.name, address=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        """Stop serving and close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ProbeServer(HTTPServer):
    """Serves ``/healthz`` and ``/readyz`` (with ``ping`` registered on both)."""

    def __init__(self, host: str, port: int) -> None:
        self.healthz = _Checks("healthz")
        self.readyz = _Checks("readyz")
        self.healthz.checks["ping"] = ping
        self.readyz.checks["ping"] = ping
        app = web.Application()
        app.router.add_get("/healthz", self.healthz.handle_all)
        app.router.add_get("/healthz/{name}", self.healthz.handle_one)
        app.router.add_get("/readyz", self.readyz.handle_all)
        app.router.add_get("/readyz/{name}", self.readyz.handle_one)
        super().__init__(app, host, port, "health-probes")

    def add_healthz_check(self, name: str, check: Check) -> None:
        """Register a liveness check (name must be unique)."""
        _add(self.healthz, name, check)

    def add_readyz_check(self, name: str, check: Check) -> None:
        """Register a readiness check (name must be unique)."""
        _add(self.readyz, name, check)


def _add(checks: _Checks, name: str, check: Check) -> None:
    if not name or "/" in name:
        raise ValueError(f"{checks.kind} check name {name!r} must be non-empty and contain no '/'")
    if name in checks.checks:
        raise ValueError(f"{checks.kind} check {name!r} is already registered")
    checks.checks[name] = check


class MetricsServer(HTTPServer):
    """Serves ``GET /metrics`` in the Prometheus text format from ``registry``."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        extra_handlers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] | None = None,
    ) -> None:
        self.registry = registry

        async def handle(_request: web.Request) -> web.Response:
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", handle)
        for path, handler in (extra_handlers or {}).items():
            app.router.add_get(path, handler)
        super().__init__(app, host, port, "metrics")
