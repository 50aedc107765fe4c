"""A real operator in-process: the API server emulator with kaito's CRDs, a kreconcile Manager running kaito's
controllers with the local provider, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from kaito.api import constants as c
from kaito.controllers import setup_controllers
from kaito.provisioner import LocalProvider
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import AlreadyExists, NotFound
from kreconcile.gvk import GVK
from kreconcile.manager import Manager
from kreconcile.testing.apiserver import APIServer

ROOT = Path(__file__).resolve().parents[3]
WORKSPACE = GVK(c.GROUP, c.V1BETA1, c.WORKSPACE_KIND)
NODECLAIM = GVK(c.KARPENTER_GROUP, c.NODECLAIM_VERSION, c.NODECLAIM_KIND)
NODE = GVK("", "v1", "Node")
STATEFULSET = GVK("apps", "v1", "StatefulSet")
SERVICE = GVK("", "v1", "Service")


async def install_crds(client: Client) -> None:
    """Create kaito's CRDs (Workspace, and the test NodeClaim CRD) and wait until they are served."""
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                with contextlib.suppress(AlreadyExists):
                    await client.create(doc)
    for gvk in (WORKSPACE, NODECLAIM):
        await eventually(lambda g=gvk: _served(client, g), timeout=10)


async def _served(client: Client, gvk: GVK) -> bool:
    try:
        await client.list(gvk)
        return True
    except Exception:
        return False


async def eventually(fn: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll ``fn`` until it returns something truthy (NotFound counts as falsy); the last value on timeout."""

    async def poll() -> Any:
        while True:
            try:
                value = await fn()
                if value:
                    return value
            except NotFound:
                pass
            await asyncio.sleep(interval)

    return await asyncio.wait_for(poll(), timeout)


def workspace(name: str, *, instance_type: str = "Standard_NC6s_v3", preset: str = "phi-3-mini-4k-instruct",
              count: int = 1, labels: dict[str, str] | None = None, namespace: str = "default",
              preferred_nodes: list[str] | None = None) -> dict[str, Any]:
    """A v1beta1 inference Workspace dict."""
    resource: dict[str, Any] = {
        "instanceType": instance_type,
        "count": count,
        "labelSelector": {"matchLabels": labels or {"apps": name}},
    }
    if preferred_nodes:
        resource["preferredNodes"] = preferred_nodes
    return {
        "apiVersion": f"{c.GROUP}/{c.V1BETA1}",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": namespace},
        "resource": resource,
        "inference": {"preset": {"name": preset}},
    }


class FakeProber:
    """Endpoint prober whose answer the test sets; records the Services it probed."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.probed: list[tuple[str, str]] = []

    async def __call__(self, namespace: str, service: str) -> tuple[bool, str]:
        self.probed.append((namespace, service))
        return (self.answer, "answered" if self.answer else "connection refused")


class Operator:
    """A running manager with kaito's controllers; ``stop()`` ends it (as a process exit would)."""

    def __init__(self, server: APIServer, provider: Any, prober: FakeProber, **kw: Any) -> None:
        cfg = load_config(str(server.kubeconfig_path)).with_rate(0)
        self.manager = Manager(cfg, metrics_bind_address="0", health_probe_bind_address="0",
                               graceful_shutdown_timeout=5)
        self.controllers = setup_controllers(self.manager, provider=provider, prober=prober,
                                             skip_name_validation=True, **kw)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Operator:
        self._task = asyncio.create_task(self.manager.start(self._stop))
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 20)


@contextlib.asynccontextmanager
async def running_operator(server: APIServer, client: Client, provider: Any = "local",
                           prober: FakeProber | None = None, **kw: Any) -> AsyncIterator[Operator]:
    """Start an operator (local provider by default) against ``server``; stop it on exit."""
    if provider == "local":
        provider = LocalProvider(client)
    op = Operator(server, provider, prober or FakeProber(), **kw)
    await op.start()
    try:
        yield op
    finally:
        await op.stop()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition ``type_`` of ``obj``'s status, or None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond  # type: ignore[no-any-return]
    return None


async def mark_statefulset_ready(client: Client, name: str, namespace: str = "default") -> None:
    """Report the StatefulSet's pods ready, as the StatefulSet controller does once its pods pass readiness."""
    sts = await client.get(STATEFULSET, name, namespace)
    replicas = sts["spec"]["replicas"]
    sts["status"] = {
        "observedGeneration": sts["metadata"]["generation"], "replicas": replicas, "readyReplicas": replicas,
        "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
    }
    await client.status().update(sts)
