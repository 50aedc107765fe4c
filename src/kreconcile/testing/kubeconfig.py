"""A tiny kubeconfig reader: the current context's server URL, CA and credentials, as an aiohttp session.

Supports what our emulator and the real-server script write: ``certificate-authority`` (path) or
``certificate-authority-data`` (base64), ``insecure-skip-tls-verify``, a bearer ``token``, and client
certificates (``client-certificate``/``client-key`` paths or ``-data``). Exec plugins and auth providers are
not supported (a clear error says so).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml


class KubeconfigError(ValueError):
    """The kubeconfig is missing, malformed or uses an unsupported feature."""


@dataclass
class ClusterAccess:
    """How to reach one cluster: ``server`` URL, an ``ssl`` context (None for http) and request ``headers``."""

    server: str
    ssl: ssl.SSLContext | None
    headers: dict[str, str] = field(default_factory=dict)
    namespace: str = "default"

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp session with this cluster's base URL, TLS and auth header."""
        connector = aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else False, limit=0)
        return aiohttp.ClientSession(base_url=self.server, connector=connector, headers=self.headers, **kwargs)


def _data_or_file(entry: dict[str, Any], key: str, base: Path, tmp: list[str]) -> str | None:
    if entry.get(f"{key}-data"):
        fd, path = tempfile.mkstemp(prefix="kubeconfig-")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(entry[f"{key}-data"]))
        tmp.append(path)
        return path
    if entry.get(key):
        p = Path(entry[key])
        return str(p if p.is_absolute() else base / p)
    return None


def load(path: str | Path, context: str | None = None) -> ClusterAccess:
    """Read ``path`` (the current context, or ``context``) into a :class:`ClusterAccess`.

    Raises:
        KubeconfigError: the file is unreadable, the context/cluster/user is missing, or it needs an exec
        plugin or auth provider.
    """
    p = Path(path)
    try:
        config = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise KubeconfigError(f"cannot read kubeconfig {p}: {e}") from e
    if not isinstance(config, dict):
        raise KubeconfigError(f"kubeconfig {p} is not a YAML mapping")
    name = context or config.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in config.get("contexts") or []}
    if name not in contexts:
        raise KubeconfigError(f"kubeconfig {p}: context {name!r} not found; set current-context")
    ctx = contexts[name]
    clusters = {c["name"]: c.get("cluster", {}) for c in config.get("clusters") or []}
    users = {u["name"]: u.get("user", {}) for u in config.get("users") or []}
    cluster = clusters.get(ctx.get("cluster"))
    if cluster is None or not cluster.get("server"):
        raise KubeconfigError(f"kubeconfig {p}: cluster {ctx.get('cluster')!r} has no server")
    user = users.get(ctx.get("user"), {})
    if user.get("exec") or user.get("auth-provider"):
        raise KubeconfigError(f"kubeconfig {p}: exec plugins and auth providers are not supported; use a token "
                              "or client certificate")
    tmp: list[str] = []
    server = str(cluster["server"]).rstrip("/")
    ctx_ssl: ssl.SSLContext | None = None
    if server.startswith("https://"):
        ca = _data_or_file(cluster, "certificate-authority", p.parent, tmp)
        ctx_ssl = ssl.create_default_context(cafile=ca)
        if cluster.get("insecure-skip-tls-verify"):
            ctx_ssl.check_hostname = False
            ctx_ssl.verify_mode = ssl.CERT_NONE
        cert = _data_or_file(user, "client-certificate", p.parent, tmp)
        key = _data_or_file(user, "client-key", p.parent, tmp)
        if cert and key:
            ctx_ssl.load_cert_chain(cert, key)
    for t in tmp:
        os.unlink(t)
    headers = {}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return ClusterAccess(server, ctx_ssl, headers, ctx.get("namespace") or "default")
