"""Fixtures for the process kubelet: a dict-backed API, a polling helper and pod builders."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from kreconcile.clock import FakeClock
from kreconcile.testing.kubelet import ImageMap, ProcessKubelet

WEBSERVER = str(Path(__file__).with_name("webserver.py"))
PYTHON = sys.executable


class FakeBackend:
    """Secrets/ConfigMaps in dicts; records status writes, finalizations and events."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.finalized: list[str] = []
        self.events: list[tuple[str, str, str]] = []

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secrets.get((namespace, name))

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.config_maps.get((namespace, name))

    async def write_pod_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        self.statuses[name] = status
        self.history.setdefault(name, []).append(status)

    async def finalize_pod(self, pod: Mapping[str, Any]) -> None:
        self.finalized.append(pod["metadata"]["name"])

    def record_event(self, pod: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, clock: FakeClock | None = None, step: float = 0.5
) -> Any:
    """Poll ``predicate`` until truthy (real-time timeout); with ``clock``, advance it ``step`` s per poll."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        if clock is not None:
            await clock.advance_and_settle(step)
        await asyncio.sleep(0.05)


def make_pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": name}},
        "spec": {"nodeName": "node-1", "containers": containers, **spec},
        "status": {},
    }


def state_of(backend: FakeBackend, pod: str, container: int = 0, init: bool = False) -> dict[str, Any]:
    status = backend.statuses.get(pod) or {}
    key = "initContainerStatuses" if init else "containerStatuses"
    statuses = status.get(key) or []
    return statuses[container] if len(statuses) > container else {}


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def images() -> ImageMap:
    return ImageMap.with_defaults()


@pytest.fixture
async def kubelet(backend: FakeBackend, images: ImageMap, tmp_path: Path) -> Any:
    kl = ProcessKubelet("node-1", backend, images, tmp_path)
    yield kl
    await kl.shutdown(grace_seconds=1.0)


@pytest.fixture
async def fake_kubelet(backend: FakeBackend, images: ImageMap, tmp_path: Path) -> Any:
    clock = FakeClock()
    kl = ProcessKubelet("node-1", backend, images, tmp_path, clock=clock)
    yield kl, clock
    task = asyncio.ensure_future(kl.shutdown(grace_seconds=0.0))
    while not task.done():
        clock.advance(1.0)
        await asyncio.sleep(0.01)
    await task
