"""Where the API server is and how to talk to it: :func:`load_config` returns a :class:`RestConfig`.

Lookup order (controller-runtime's ``config.GetConfig``): an explicit kubeconfig path → ``$KUBECONFIG`` (a
``:``-separated list, merged as kubectl does) → the in-cluster service account
(``KUBERNETES_SERVICE_HOST``/``_PORT`` and ``/var/run/secrets/kubernetes.io/serviceaccount``) → ``~/.kube/config``.

:func:`load_config` only resolves and checks the source, so it is synchronous and cheap. Credentials (client
certificates, bearer tokens and token files, exec plugins, rotation) are loaded when a client connects, by
:meth:`RestConfig.connect` (see :mod:`kreconcile.connection`); :meth:`RestConfig.new_api_client` builds a
kubernetes-asyncio ``ApiClient`` instead, for code that wants its generated APIs.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient, Configuration

    from kreconcile.connection import Connection

DEFAULT_QPS = 20.0
"""Client-side request rate (requests/s). controller-runtime raises client-go's 5 to 20 when unset."""
DEFAULT_BURST = 30
"""Requests allowed at once above the steady rate (controller-runtime's default, client-go's is 10)."""
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where Kubernetes mounts a pod's service account token, CA and namespace."""


class ConfigError(Exception):
    """No usable API server configuration was found, or the one given is broken; the message says which
    source was tried and how to fix it."""


@dataclass(frozen=True)
class RestConfig:
    """How to reach one API server.

    Build with :func:`load_config` (kubeconfig / in-cluster) or directly with ``host`` (and ``token`` / TLS files)
    for a server you started yourself.
    """

    host: str
    """Base URL, e.g. ``https://10.0.0.1:443`` or ``http://127.0.0.1:6443``."""
    kubeconfig: str | None = None
    """Kubeconfig path(s) (``:``-separated) the credentials come from; None for in-cluster or explicit configs."""
    context: str | None = None
    """Kubeconfig context; None means the file's ``current-context``."""
    in_cluster: bool = False
    """True when credentials come from the pod's service account."""
    service_account_dir: str = SERVICE_ACCOUNT_DIR
    """Where the in-cluster token (re-read every minute) and CA are mounted."""
    token: str | None = None
    """Bearer token for explicit configs (without the ``Bearer`` prefix)."""
    ca_file: str | None = None
    """CA bundle for explicit https configs."""
    cert_file: str | None = None
    """Client certificate for explicit configs."""
    key_file: str | None = None
    """Client key for explicit configs."""
    verify_ssl: bool = True
    """Verify the server certificate (explicit configs only; kubeconfig's ``insecure-skip-tls-verify`` wins there)."""
    qps: float = DEFAULT_QPS
    """Steady client-side request rate in requests/s; ``<= 0`` disables client-side throttling (for benchmarks,
    or servers protected by API Priority and Fairness)."""
    burst: int = DEFAULT_BURST
    """Token bucket size: requests allowed at once before ``qps`` applies."""
    timeout: float = 60.0
    """Seconds a non-watch request may take before it fails (client-go uses no timeout by default; we bound it)."""
    user_agent: str = "kreconcile/0.1"
    """``User-Agent`` header sent with every request."""
    connection_pool_size: int = 100
    """Maximum parallel connections to the server (aiohttp connector limit)."""
    exec_refresh_interval: float = 300.0
    """For kubeconfig users with an ``exec`` credential plugin (kubelogin, aws-iam-authenticator...): the plugin is
    run again 10 s before its token's ``expirationTimestamp``, or, when it gives none, this often (seconds).
    (kubernetes-asyncio's loader alone runs it only once, so long-running clients lost access.)"""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form settings for callers; unused by kreconcile."""

    def with_rate(self, qps: float, burst: int | None = None) -> RestConfig:
        """A copy with another client-side rate limit (``burst`` defaults to 1.5 × ``qps``, at least 1)."""
        return replace(self, qps=qps, burst=burst if burst is not None else max(1, int(qps * 1.5)))

    async def connect(self) -> Connection:
        """Resolve the server URL, TLS settings, proxy and credentials (what :class:`~kreconcile.client.Client`
        uses; see :mod:`kreconcile.connection`).

        Raises:
            ConfigError: a kubeconfig, certificate or token file is missing or malformed, or the exec plugin failed.
        """
        from kreconcile.connection import connect

        try:
            return await connect(self, self.service_account_dir)
        except ConfigError:
            raise
        except (OSError, ValueError, ssl.SSLError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot load credentials for {self.host}: {err}") from err

    async def new_api_client(self) -> ApiClient:
        """A fresh kubernetes-asyncio ``ApiClient`` (its own connection pool) for this server, for code that wants
        kubernetes-asyncio's generated APIs (kreconcile itself does not: importing them costs ~40 MiB).

        Raises:
            ConfigError: the kubeconfig or service account files could not be loaded.
        """
        from kubernetes_asyncio.client import ApiClient, Configuration
        from kubernetes_asyncio.config import load_incluster_config, load_kube_config

        cfg = Configuration()
        try:
            if self.kubeconfig is not None:
                loader = await load_kube_config(
                    config_file=self.kubeconfig, context=self.context, client_configuration=cfg, persist_config=False
                )
                user = getattr(loader, "_user", None)
                if user is not None and "exec" in user:
                    cfg.refresh_api_key_hook = _exec_refresher(loader, self.exec_refresh_interval)
            elif self.in_cluster:
                load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                cfg.host = self.host
                if self.token:
                    cfg.api_key["BearerToken"] = self.token
                    cfg.api_key_prefix["BearerToken"] = "Bearer"
                cfg.ssl_ca_cert = self.ca_file
                cfg.cert_file = self.cert_file
                cfg.key_file = self.key_file
                cfg.verify_ssl = self.verify_ssl
        except Exception as err:  # kubernetes-asyncio raises ConfigException, OSError, ValueError...
            raise ConfigError(f"cannot load credentials for {self.host}: {err}") from err
        cfg.connection_pool_maxsize = self.connection_pool_size
        api = ApiClient(configuration=cfg)
        api.user_agent = self.user_agent
        return api


def _exec_refresher(loader: Any, interval: float) -> Callable[[Configuration], Awaitable[None]]:
    """A kubernetes-asyncio ``refresh_api_key_hook`` that re-runs the exec plugin when its token expired (the
    loader checks ``expirationTimestamp`` itself) or, without an expiry, every ``interval`` seconds."""
    last = time.monotonic()

    async def refresh(configuration: Configuration) -> None:
        nonlocal last
        if not hasattr(loader, "exec_plugin_expiry"):
            if time.monotonic() - last < interval:
                return
        last = time.monotonic()
        await loader.load_from_exec_plugin()
        token = getattr(loader, "token", None)
        if token:
            configuration.api_key["BearerToken"] = token

    return refresh


def _kubeconfig_host(paths: str, context: str | None) -> str:
    """The server URL of ``context`` (or the current context) in the merged kubeconfig files ``paths``."""
    docs: list[dict[str, Any]] = []
    for p in paths.split(os.pathsep):
        if not p:
            continue
        path = Path(p).expanduser()
        if not path.is_file():
            continue
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"kubeconfig {path}: cannot be read as YAML: {err}") from err
        if isinstance(loaded, dict):
            docs.append(loaded)
    if not docs:
        raise ConfigError(f"kubeconfig {paths!r}: no such file; pass an existing path or set KUBECONFIG")
    current = context or next((d.get("current-context") for d in docs if d.get("current-context")), None)
    if not current:
        raise ConfigError(f"kubeconfig {paths!r}: no current-context; pass context= or run kubectl config use-context")
    ctx = next((c for d in docs for c in d.get("contexts") or [] if c.get("name") == current), None)
    if ctx is None:
        raise ConfigError(
            f"kubeconfig {paths!r}: context {current!r} not found; list them with kubectl config get-contexts"
        )
    cluster_name = (ctx.get("context") or {}).get("cluster")
    cluster = next((c for d in docs for c in d.get("clusters") or [] if c.get("name") == cluster_name), None)
    server = ((cluster or {}).get("cluster") or {}).get("server")
    if not server:
        raise ConfigError(f"kubeconfig {paths!r}: cluster {cluster_name!r} of context {current!r} has no server URL")
    return str(server)


def load_config(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    qps: float = DEFAULT_QPS,
    burst: int = DEFAULT_BURST,
    environ: dict[str, str] | None = None,
    service_account_dir: str = SERVICE_ACCOUNT_DIR,
) -> RestConfig:
    """Find the API server configuration: ``kubeconfig`` → ``$KUBECONFIG`` → in-cluster → ``~/.kube/config``.

    Args:
        kubeconfig: explicit kubeconfig path (``:``-separated list allowed).
        context: kubeconfig context to use instead of ``current-context``.
        qps, burst: client-side rate limit (see :class:`RestConfig`).
        environ: environment to read (defaults to ``os.environ``; for tests).
        service_account_dir: where the in-cluster token and CA live (for tests).

    Raises:
        ConfigError: nothing usable was found, or the file named is missing, not YAML, or lacks the context.
    """
    env = os.environ if environ is None else environ
    path = kubeconfig or env.get("KUBECONFIG") or None
    if path:
        return RestConfig(host=_kubeconfig_host(path, context), kubeconfig=path, context=context, qps=qps, burst=burst)
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = Path(service_account_dir, "token")
    if host and port and token.is_file():
        h = f"[{host}]" if ":" in host else host
        return RestConfig(host=f"https://{h}:{port}", in_cluster=True, service_account_dir=service_account_dir,
                          qps=qps, burst=burst)
    home = Path("~/.kube/config").expanduser()
    if home.is_file():
        return RestConfig(host=_kubeconfig_host(str(home), context), kubeconfig=str(home), context=context, qps=qps,
                          burst=burst)
    raise ConfigError(
        "no API server configuration: pass kubeconfig=, set KUBECONFIG, run in a pod with a service account, "
        "or create ~/.kube/config"
    )


def in_cluster_namespace(service_account_dir: str = SERVICE_ACCOUNT_DIR) -> str | None:
    """The pod's namespace from the mounted service account, or None outside a cluster (used as the default
    leader-election namespace, as controller-runtime does)."""
    try:
        return Path(service_account_dir, "namespace").read_text().strip() or None
    except OSError:
        return None
