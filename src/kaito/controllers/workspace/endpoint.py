"""Does the inference Service answer? ``WorkspaceSucceeded`` (the seed's WORKSPACEREADY) waits for this.

On a real cluster the operator runs in the cluster and reaches ``http://<svc>.<namespace>.svc:80/health``.
Elsewhere (``kaito dev``, tests) a resolver maps the Service to an address this process can reach, e.g.
:meth:`kreconcile.testing.LocalCluster.service_address`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from kaito.api import constants as c

Resolver = Callable[[str, str, int], tuple[str, int] | Awaitable[tuple[str, int] | None] | None]
"""(namespace, service, port) → (host, port) to dial, or None when it has no address yet."""

PROBE_TIMEOUT_S = 3.0
"""Seconds one health probe may take (the runtime answers /health from its event loop in milliseconds)."""


def cluster_dns(namespace: str, service: str, port: int) -> tuple[str, int]:
    """The in-cluster DNS name of a Service: ``<service>.<namespace>.svc``."""
    return f"{service}.{namespace}.svc", port


class HTTPEndpointProber:
    """Probes ``GET /health`` on a workspace's Service through ``resolver``.

    Args:
        resolver: see :data:`Resolver`; default :func:`cluster_dns` (operator inside the cluster).
        timeout: seconds per probe.
    """

    def __init__(self, resolver: Resolver | None = None, *, timeout: float = PROBE_TIMEOUT_S) -> None:
        self.resolver: Resolver = resolver or cluster_dns
        self.timeout = timeout

    async def __call__(self, namespace: str, service: str) -> tuple[bool, str]:
        """(answered, message) for Service ``namespace/service`` port 80."""
        address = self.resolver(namespace, service, c.SERVICE_PORT)
        if asyncio.iscoroutine(address) or isinstance(address, Awaitable):
            address = await address
        if address is None:
            return False, f"Service {service} has no reachable address yet"
        host, port = address
        url = f"http://{host}:{port}{c.HEALTH_PATH}"
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                if resp.status == 200:
                    return True, f"the inference endpoint answers on Service {service} port {c.SERVICE_PORT}"
                return False, f"GET {c.HEALTH_PATH} on Service {service} answered HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return False, f"GET {c.HEALTH_PATH} on Service {service} failed: {type(exc).__name__} {exc}".strip()
