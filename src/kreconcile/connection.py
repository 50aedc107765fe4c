"""Resolve a :class:`~kreconcile.config.RestConfig` into what one HTTP request needs: base URL, TLS context,
proxy and a source of auth headers — without importing kubernetes-asyncio.

Why: ``import kubernetes_asyncio.client`` loads ~800 generated model modules (≈ 40 MiB of RSS), more than the rest
of an operator together, and kreconcile only needs the wire. This module reads kubeconfig files itself for the
common cases — server, CA (file or data), client certificate and key (file or data), bearer token or token file,
basic auth, ``insecure-skip-tls-verify``, ``tls-server-name``, ``proxy-url`` and ``exec`` credential plugins
(``client.authentication.k8s.io`` ExecCredential, token or client certificate, re-run when
``expirationTimestamp`` passes) — and the in-cluster service account (the token file is re-read every minute, as
client-go does, because bound tokens rotate). Legacy ``auth-provider`` users (gcp, oidc, azure) fall back to
kubernetes-asyncio's loader, imported only then.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kreconcile.config import ConfigError

if TYPE_CHECKING:
    from kreconcile.config import RestConfig

AuthSource = Callable[[], Awaitable[dict[str, str]]]
"""Returns the auth headers for the next request (``{"Authorization": "Bearer ..."}`` or ``{}``)."""

TOKEN_FILE_RELOAD = 60.0
"""Seconds between re-reads of a token file (client-go's ``cachingTokenSource`` period)."""


@dataclass
class Connection:
    """Everything a request needs besides its path and body."""

    host: str
    """Base URL without a trailing slash."""
    ssl_context: ssl.SSLContext | None
    """TLS settings for https servers (None: plain http, or the system defaults)."""
    server_hostname: str | None
    """TLS SNI/verification name when it differs from the URL's host (kubeconfig ``tls-server-name``)."""
    proxy: str | None
    """HTTP proxy URL (kubeconfig ``proxy-url``), or None."""
    auth: AuthSource
    """Auth headers for each request."""


async def _no_auth() -> dict[str, str]:
    return {}


def _static(headers: dict[str, str]) -> AuthSource:
    async def auth() -> dict[str, str]:
        return headers

    return auth


def _read_token(path: Path) -> str:
    """A token file's content (tiny; read at most once a minute, so reading it inline is fine)."""
    return path.read_text().strip()


def _token_file_source(path: Path) -> AuthSource:
    state: dict[str, Any] = {"at": -1e18, "token": ""}

    async def auth() -> dict[str, str]:
        now = time.monotonic()
        if now - state["at"] >= TOKEN_FILE_RELOAD:
            state["token"] = _read_token(path)
            state["at"] = now
        return {"Authorization": f"Bearer {state['token']}"} if state["token"] else {}

    return auth


def _ssl_context(
    ca_file: str | None = None,
    ca_data: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    cert_data: bytes | None = None,
    key_data: bytes | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    elif cert_data is not None:
        # ssl can only load client certificates from files: write them privately, load, delete
        with tempfile.TemporaryDirectory(prefix="kreconcile-tls-") as d:
            cp, kp = Path(d, "tls.crt"), Path(d, "tls.key")
            cp.write_bytes(cert_data)
            kp.write_bytes(key_data or b"")
            os.chmod(kp, 0o600)
            ctx.load_cert_chain(str(cp), str(kp) if key_data else None)
    return ctx


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value)
    except ValueError as err:
        raise ConfigError(f"kubeconfig {what}: not valid base64") from err


def _merged(paths: str) -> tuple[list[tuple[Path, dict[str, Any]]], str | None]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for p in paths.split(os.pathsep):
        path = Path(p).expanduser() if p else None
        if path is None or not path.is_file():
            continue
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            docs.append((path, loaded))
    current = next((d.get("current-context") for _, d in docs if d.get("current-context")), None)
    return docs, current


def _named(docs: list[tuple[Path, dict[str, Any]]], section: str, name: Any) -> tuple[Path, dict[str, Any]]:
    for path, d in docs:
        for item in d.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                body = item.get(section[:-1]) or {}
                return path, body if isinstance(body, dict) else {}
    raise ConfigError(f"kubeconfig: {section[:-1]} {name!r} not found")


def _rel(base: Path, value: str | None) -> str | None:
    if not value:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base.parent / p)


class _ExecPlugin:
    """Runs a kubeconfig ``exec`` credential plugin and caches its answer until it expires."""

    def __init__(self, spec: dict[str, Any], base: Path, refresh_interval: float) -> None:
        if not spec.get("command") or not spec.get("apiVersion"):
            raise ConfigError("kubeconfig exec plugin needs 'command' and 'apiVersion'")
        command = str(spec["command"])
        if os.sep in command and not os.path.isabs(command):
            command = str(base.parent / command)
        self.argv = [command, *[str(a) for a in spec.get("args") or []]]
        self.env = {str(e["name"]): str(e["value"]) for e in spec.get("env") or [] if "name" in e}
        self.api_version = str(spec["apiVersion"])
        self.refresh_interval = refresh_interval
        self.status: dict[str, Any] = {}
        self._expires: float | None = None
        self._fetched = -1e18
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        if not self.status:
            return False
        if self._expires is not None:
            return time.time() < self._expires - 10  # renew 10 s early
        return time.monotonic() - self._fetched < self.refresh_interval

    async def credentials(self) -> dict[str, Any]:
        if self._fresh():
            return self.status
        async with self._lock:
            if self._fresh():
                return self.status
            info = {"apiVersion": self.api_version, "kind": "ExecCredential",
                    "spec": {"interactive": sys.stdin.isatty()}}
            env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
                )
            except OSError as err:
                raise ConfigError(f"kubeconfig exec plugin {self.argv[0]!r} cannot run: {err}") from err
            out, err_out = await asyncio.wait_for(proc.communicate(), 60)
            if proc.returncode != 0:
                raise ConfigError(
                    f"kubeconfig exec plugin {self.argv[0]!r} exited {proc.returncode}: "
                    f"{err_out.decode(errors='replace').strip()}"
                )
            try:
                status = (json.loads(out) or {}).get("status") or {}
            except ValueError as err:
                raise ConfigError(f"kubeconfig exec plugin {self.argv[0]!r} printed no ExecCredential") from err
            if not status.get("token") and not status.get("clientCertificateData"):
                raise ConfigError(
                    f"kubeconfig exec plugin {self.argv[0]!r}: ExecCredential has neither token nor client certificate"
                )
            self.status = status
            self._fetched = time.monotonic()
            exp = status.get("expirationTimestamp")
            self._expires = (
                dt.datetime.fromisoformat(str(exp).replace("Z", "+00:00")).timestamp() if exp else None
            )
            return status


async def _from_kubeconfig(cfg: RestConfig) -> Connection:
    assert cfg.kubeconfig is not None
    docs, current = _merged(cfg.kubeconfig)
    ctx_name = cfg.context or current
    _, ctx = _named(docs, "contexts", ctx_name)
    cluster_path, cluster = _named(docs, "clusters", ctx.get("cluster"))
    user_path, user = _named(docs, "users", ctx.get("user")) if ctx.get("user") else (cluster_path, {})
    if user.get("auth-provider"):
        return await _via_kubernetes_asyncio(cfg)
    server = str(cluster.get("server") or cfg.host).rstrip("/")
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    ca_file = _rel(cluster_path, cluster.get("certificate-authority"))
    ca_data = (_b64(cluster["certificate-authority-data"], "certificate-authority-data").decode()
               if cluster.get("certificate-authority-data") else None)
    cert_file = _rel(user_path, user.get("client-certificate"))
    key_file = _rel(user_path, user.get("client-key"))
    cert_data = _b64(user["client-certificate-data"], "client-certificate-data") \
        if user.get("client-certificate-data") else None
    key_data = _b64(user["client-key-data"], "client-key-data") if user.get("client-key-data") else None

    auth: AuthSource = _no_auth
    if user.get("exec"):
        plugin = _ExecPlugin(user["exec"], user_path, cfg.exec_refresh_interval)
        status = await plugin.credentials()
        if status.get("clientCertificateData"):
            cert_data = str(status["clientCertificateData"]).encode()
            key_data = str(status.get("clientKeyData") or "").encode()
        else:
            async def exec_auth() -> dict[str, str]:
                token = (await plugin.credentials()).get("token")
                return {"Authorization": f"Bearer {token}"} if token else {}

            auth = exec_auth
    elif user.get("token"):
        auth = _static({"Authorization": f"Bearer {user['token']}"})
    elif user.get("tokenFile"):
        auth = _token_file_source(Path(_rel(user_path, user["tokenFile"]) or ""))
    elif user.get("username") is not None and user.get("password") is not None:
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        auth = _static({"Authorization": f"Basic {basic}"})
    tls = server.startswith("https")
    tls_ctx = _ssl_context(ca_file, ca_data, cert_file, key_file, cert_data, key_data, insecure) if tls else None
    return Connection(server, tls_ctx, cluster.get("tls-server-name"), cluster.get("proxy-url"), auth)


async def _via_kubernetes_asyncio(cfg: RestConfig) -> Connection:
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import load_kube_config

    conf = Configuration()
    await load_kube_config(config_file=cfg.kubeconfig, context=cfg.context, client_configuration=conf,
                           persist_config=False)

    async def auth() -> dict[str, str]:
        value = await conf.get_api_key_with_prefix("BearerToken")
        return {"Authorization": str(value)} if value else {}

    host = str(conf.host).rstrip("/")
    ctx = _ssl_context(conf.ssl_ca_cert, None, conf.cert_file, conf.key_file, insecure=not conf.verify_ssl) \
        if host.startswith("https") else None
    return Connection(host, ctx, conf.tls_server_name, conf.proxy, auth)


async def connect(cfg: RestConfig, service_account_dir: str) -> Connection:
    """Resolve ``cfg`` (see the module docstring).

    Raises:
        ConfigError: a file is missing or malformed, the exec plugin fails (the message says which).
        OSError, ssl.SSLError: certificate files cannot be read.
    """
    if cfg.kubeconfig is not None:
        return await _from_kubeconfig(cfg)
    host = cfg.host.rstrip("/")
    tls = host.startswith("https")
    if cfg.in_cluster:
        sa = Path(service_account_dir)
        ctx = _ssl_context(str(sa / "ca.crt")) if tls else None
        return Connection(host, ctx, None, None, _token_file_source(sa / "token"))
    ctx = _ssl_context(cfg.ca_file, None, cfg.cert_file, cfg.key_file, insecure=not cfg.verify_ssl) if tls else None
    auth = _static({"Authorization": f"Bearer {cfg.token}"}) if cfg.token else _no_auth
    return Connection(host, ctx, None, None, auth)
