"""The wire under :class:`~kreconcile.client.Client`: one aiohttp session per client, credentials from
:mod:`kreconcile.connection`, a client-side token bucket, ``Retry-After`` handling and request metrics.

Every request passes the token bucket (:attr:`RestConfig.qps <kreconcile.config.RestConfig.qps>` / ``burst``,
20/30 by default), is counted in ``rest_client_requests_total{code,method,host}`` (code 0 for connection
failures), and is retried up to ``max_retries`` times (10, as client-go) when the server answers 429 or 5xx with a
``Retry-After`` header, after waiting that long (capped by ``max_retry_after``).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from kreconcile import metrics
from kreconcile.clock import Clock, RealClock
from kreconcile.config import RestConfig
from kreconcile.connection import Connection
from kreconcile.errors import from_response

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient


class TokenBucket:
    """Client-side request throttle: ``qps`` tokens per second, at most ``burst`` saved (client-go's
    ``flowcontrol.NewTokenBucketRateLimiter``). Waiters queue in arrival order; ``qps <= 0`` disables it."""

    def __init__(self, qps: float, burst: int, clock: Clock | None = None) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"burst must be >= 1 when qps > 0 (got burst={burst}); set burst to at least 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    async def acquire(self) -> float:
        """Take one token, waiting for it if none is left. Returns the seconds waited (0.0 when none)."""
        if self.qps <= 0:
            return 0.0
        now = self._clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.qps
        await self._clock.sleep(wait)
        return wait


class Transport:
    """Sends requests to one API server; built by :class:`~kreconcile.client.Client` from a :class:`RestConfig`
    (connected on first use) or an existing kubernetes-asyncio ``ApiClient`` (its session and credentials are
    reused)."""

    def __init__(
        self,
        config: RestConfig | ApiClient,
        *,
        clock: Clock | None = None,
        max_retries: int = 10,
        max_retry_after: float = 30.0,
    ) -> None:
        self._clock = clock or RealClock()
        self._api: Any = None
        if isinstance(config, RestConfig):
            self.config: RestConfig = config
        else:
            self.config = RestConfig(host=str(config.configuration.host))
            self._api = config
        self._conn: Connection | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._proxy_headers: dict[str, str] | None = None
        self._own_api: Any = None
        self._lock = asyncio.Lock()
        self._host_label = urlparse(self.config.host).netloc or self.config.host
        self.rate_limiter = TokenBucket(self.config.qps, self.config.burst, self._clock)
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self._counters: dict[tuple[int, str], Any] = {}
        self._user_agent = self.config.user_agent

    async def close(self) -> None:
        """Close the connection pool (unless it belongs to an ``ApiClient`` passed in)."""
        if self._session is not None and self._api is None:
            await self._session.close()
        self._session = None
        self._conn = None
        if self._own_api is not None:
            await self._own_api.close()
            self._own_api = None

    @property
    def connection(self) -> Connection | None:
        """The resolved connection (URL, TLS, proxy, auth) once the first request has been made."""
        return self._conn

    @property
    def proxy(self) -> str | None:
        """The HTTP proxy requests go through (kubeconfig ``proxy-url`` or the environment), or None."""
        return self._proxy

    @property
    def proxy_headers(self) -> dict[str, str] | None:
        """``Proxy-Authorization`` for the proxy (from credentials in the environment's proxy URL), or None."""
        return self._proxy_headers

    async def api_client(self) -> ApiClient:
        """A kubernetes-asyncio ``ApiClient`` for the same server (the one passed in, or a new one with its own
        connection pool, closed with this client), for code that wants kubernetes-asyncio's generated APIs."""
        if self._api is not None:
            api: ApiClient = self._api
            return api
        if self._own_api is None:
            self._own_api = await self.config.new_api_client()
        own: ApiClient = self._own_api
        return own

    async def connect(self) -> Connection:
        """Resolve credentials and open the session now instead of on the first request (optional).

        Raises:
            ConfigError: the credentials could not be loaded.
        """
        return (await self._connect())[1]

    async def _connect(self) -> tuple[aiohttp.ClientSession, Connection]:
        async with self._lock:
            if self._session is not None and self._conn is not None:
                return self._session, self._conn
            if self._api is not None:
                api = self._api
                _resolve_env_proxy_once(api)

                async def auth() -> dict[str, str]:
                    headers: dict[str, str] = {}
                    await api.update_params_for_auth(headers, [], ["BearerToken"])
                    return headers

                conn = Connection(str(api.configuration.host).rstrip("/"), None,
                                  api.configuration.tls_server_name, api.rest_client.proxy, auth)
                session: aiohttp.ClientSession = api.rest_client.pool_manager
                self._user_agent = str(api.user_agent)
            else:
                conn = await self.config.connect()
                connector = aiohttp.TCPConnector(
                    limit=self.config.connection_pool_size,
                    ssl=conn.ssl_context if conn.ssl_context is not None else True,
                )
                # trust_env off: aiohttp would read ~/.netrc and the proxy environment in a worker thread on every
                # request; the proxy is resolved once below instead
                session = aiohttp.ClientSession(connector=connector, read_bufsize=2**21, trust_env=False)
            proxy, proxy_auth = conn.proxy, None
            if proxy is None:
                try:
                    env_proxy, proxy_auth = get_env_proxy_for_url(URL(conn.host))
                    proxy = str(env_proxy) if env_proxy is not None else None
                except LookupError:
                    proxy = None
            self._proxy = proxy
            self._proxy_headers = {"Proxy-Authorization": proxy_auth.encode()} if proxy_auth is not None else None
            self._conn, self._session = conn, session
            return session, conn

    # ---------------------------------------------------------------- transport

    def _count(self, code: int, method: str) -> None:
        child = self._counters.get((code, method))
        if child is None:
            child = metrics.rest_client_requests_total.labels(code=str(code), method=method, host=self._host_label)
            self._counters[(code, method)] = child
        child.inc()

    async def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """One HTTP exchange (after throttling), retried on 429/5xx with ``Retry-After``; the caller releases the
        response.

        Raises:
            ApiError: the typed error of a non-2xx answer (after the retries).
            aiohttp.ClientError, TimeoutError: the connection failed (counted with code 0).
        """
        session, conn = (self._session, self._conn) if self._conn is not None else await self._connect()
        assert session is not None
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        url = conn.host + path
        attempt = 0
        while True:
            await self.rate_limiter.acquire()
            headers = {"Accept": "application/json", "Content-Type": content_type, "User-Agent": self._user_agent}
            headers.update(await conn.auth())
            try:
                resp = await session.request(
                    method,
                    url,
                    params=query or None,
                    data=data,
                    headers=headers,
                    timeout=timeout,
                    proxy=self._proxy,
                    proxy_headers=self._proxy_headers,
                    server_hostname=conn.server_hostname,
                )
            except (TimeoutError, aiohttp.ClientError):
                self._count(0, method)
                raise
            self._count(resp.status, method)
            if resp.status < 300:
                return resp
            raw = await resp.read()
            resp.release()
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            err = from_response(resp.status, raw, retry_after)
            if (
                (resp.status == 429 or resp.status >= 500)
                and retry_after is not None
                and attempt < self.max_retries
            ):
                attempt += 1
                await self._clock.sleep(min(retry_after, self.max_retry_after))
                continue
            raise err


def _resolve_env_proxy_once(api: Any) -> None:
    """kubernetes-asyncio opens its aiohttp session with ``trust_env=True``, which makes aiohttp look up
    ``~/.netrc`` and the proxy environment in a worker thread on *every* request (two thread hops, a large share
    of a small request's CPU). Resolve the proxy for the API server once here, pin it on the REST client, and turn
    the per-request lookups off. Kubernetes credentials never come from netrc."""
    rest = api.rest_client
    session = rest.pool_manager
    if not getattr(session, "_trust_env", False):
        return
    if rest.proxy is None:
        try:
            proxy, proxy_auth = get_env_proxy_for_url(URL(str(api.configuration.host)))
        except LookupError:
            proxy, proxy_auth = None, None
        if proxy is not None:
            rest.proxy = str(proxy)
            if proxy_auth is not None:
                rest.proxy_headers = {"Proxy-Authorization": proxy_auth.encode()}
    session._trust_env = False


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
