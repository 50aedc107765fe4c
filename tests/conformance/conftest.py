"""The conformance suite's cluster: the emulator by default, or any server named by KREC_CONFORMANCE_KUBECONFIG.

Every test gets a fresh namespace and an aiohttp session authenticated from the kubeconfig, so the same tests run
unchanged against a real kube-apiserver (hack/real-apiserver.sh) and against the emulator. The emulator is started
with ``watch_window=100``, the real watch cache's default capacity, so window-dependent tests behave alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from kreconcile.testing import APIServer
from kreconcile.testing.kubeconfig import load

ENV = "KREC_CONFORMANCE_KUBECONFIG"
DATA = Path(__file__).parent / "data"
KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"
CRD_NAME = "widgets.conformance.kreconcile.dev"
WIDGET_API = "conformance.kreconcile.dev/v1"
POLL_TIMEOUT_S = 20.0
"""How long cascade effects may take: the real garbage collector is asynchronous (seconds under load)."""


@dataclass
class Cluster:
    """One test's view of the server under test."""

    kubeconfig: Path
    http: aiohttp.ClientSession
    namespace: str
    minor: int
    emulator: APIServer | None
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def is_emulator(self) -> bool:
        return self.emulator is not None

    def require_minor(self, minor: int, feature: str) -> None:
        """Skip when the server is older than 1.<minor> (features Kubernetes 1.20 lacks)."""
        if self.minor < minor:
            pytest.skip(f"{feature} needs Kubernetes >= 1.{minor}; the server is 1.{self.minor}")

    def ns_path(self, resource: str, group_version: str = "v1", name: str = "", sub: str = "") -> str:
        """``/api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]]`` (or ``/apis/<gv>/...``)."""
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{base}/namespaces/{self.namespace}/{resource}"
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path

    async def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                      params: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        """One request; returns (status, decoded JSON body or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.http.request(method, path, data=data, headers=headers, params=params) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def create(self, resource: str, obj: dict[str, Any], group_version: str = "v1") -> dict[str, Any]:
        """POST and assert 201."""
        status, body = await self.request("POST", self.ns_path(resource, group_version), obj)
        assert status == 201, body
        return body

    async def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run kubectl against this cluster (namespace defaulted to the test's); returns stdout (+stderr on
        failure when ``check`` is False)."""
        proc = await asyncio.create_subprocess_exec(
            str(KUBECTL), "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {err.decode()}")
        return out.decode() + ("" if check else err.decode())

    async def ensure_widget_crd(self) -> None:
        """Create the test CRD (shared by tests; never deleted on a real server) and wait until it serves."""
        crd = yaml.safe_load((DATA / "widget-crd.yaml").read_text())
        status, body = await self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        assert status in (201, 409), body

        async def served() -> bool:
            s, _ = await self.request("GET", self.ns_path("widgets", WIDGET_API))
            return s == 200

        await eventually(served, "the widgets CRD to be served")


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = POLL_TIMEOUT_S) -> Any:
    """Poll ``check`` until it returns a truthy value (observable state, not time), or fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def _wait_for_default_service_account(c: Cluster) -> None:
    """A real server's ServiceAccount admission refuses pods until the namespace's ``default`` ServiceAccount
    (and, before 1.24, its token secret) exists; the emulator runs no such admission plugin."""

    async def ready() -> bool:
        status, sa = await c.request("GET", f"/api/v1/namespaces/{c.namespace}/serviceaccounts/default")
        return status == 200 and (c.minor >= 24 or bool(sa.get("secrets")))

    await eventually(ready, "the namespace's default ServiceAccount token")


def _minor(version: dict[str, Any]) -> int:
    return int("".join(ch for ch in str(version.get("minor", "0")) if ch.isdigit()) or 0)


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """The server under test with a fresh namespace (deleted afterwards)."""
    emulator: APIServer | None = None
    path = os.environ.get(ENV)
    if path:
        kubeconfig = Path(path)
    else:
        emulator = APIServer(watch_window=100)
        await emulator.start()
        kubeconfig = emulator.kubeconfig_path
    access = load(kubeconfig)
    namespace = f"conf-{secrets.token_hex(4)}"
    try:
        async with access.session(timeout=aiohttp.ClientTimeout(total=60)) as http:
            async with http.get("/version") as r:
                minor = _minor(await r.json())
            c = Cluster(kubeconfig, http, namespace, minor, emulator)
            status, body = await c.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
            assert status == 201, body
            if emulator is None:
                await _wait_for_default_service_account(c)
            try:
                yield c
            finally:
                for fn in reversed(c.cleanup):
                    await fn()
                if emulator is None:
                    await c.request("DELETE", f"/api/v1/namespaces/{namespace}")
    finally:
        if emulator is not None:
            await emulator.stop()


async def read_events(resp: aiohttp.ClientResponse, count: int, timeout: float = POLL_TIMEOUT_S
                      ) -> list[dict[str, Any]]:
    """Read up to ``count`` watch events (fewer if the stream ends)."""
    events: list[dict[str, Any]] = []
    while len(events) < count:
        line = await asyncio.wait_for(resp.content.readline(), timeout)
        if not line:
            break
        events.append(json.loads(line))
    return events
