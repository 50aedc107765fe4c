"""A fake Azure Resource Manager for AKS agent pools, speaking the real REST shapes and LRO protocol.

PUT/GET/DELETE ``/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/
{cluster}/agentPools/{pool}`` and the list, over HTTPS (azure-core refuses bearer tokens on plain HTTP). PUT and
DELETE answer 201/202 with an ``Azure-AsyncOperation`` URL whose status goes InProgress → Succeeded (or Failed)
after ``polls_until_done`` polls. Failure knobs: ``quota_exceeded`` (VM sizes answering 400 QuotaExceeded, as ARM
does synchronously), ``throttle_next`` (429 with Retry-After), ``fail_async`` (VM sizes whose LRO fails).
``on_ready(pool)`` / ``on_deleted(pool)`` callbacks let a test register or remove the Node that would join.
"""

from __future__ import annotations

import itertools
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kreconcile.testing.apiserver.tls import generate_certs

PoolCallback = Callable[[dict[str, Any]], Awaitable[None]]


class FakeARM:
    """The fake ARM server; ``url`` after ``start``; ``ca_path`` for ``connection_verify``."""

    def __init__(self, tmp: Path, *, polls_until_done: int = 1) -> None:
        self.tmp = tmp
        self.polls_until_done = polls_until_done
        self.pools: dict[str, dict[str, Any]] = {}
        self.quota_exceeded: set[str] = set()
        self.fail_async: set[str] = set()
        self.throttle_next = 0
        self.requests: list[tuple[str, str]] = []
        self.on_ready: PoolCallback | None = None
        self.on_deleted: PoolCallback | None = None
        self._ops: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.ca_path = Path()

    async def start(self) -> FakeARM:
        certs = generate_certs(self.tmp / "arm-certs")
        self.ca_path = certs.ca_path
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(certs.cert_path), str(certs.key_path))
        app = web.Application()
        base = ("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/"
                "managedClusters/{cluster}/agentPools")
        app.router.add_get(base, self._list)
        app.router.add_route("*", base + "/{pool}", self._pool)
        app.router.add_get("/operations/{op}", self._operation)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"https://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)

    def _throttled(self) -> web.Response | None:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return self._error(429, "TooManyRequests", "The request is being throttled.", {"Retry-After": "1"})
        return None

    def _op(self, kind: str, pool: str) -> str:
        op_id = f"op{next(self._ids)}"
        self._ops[op_id] = {"kind": kind, "pool": pool, "polls": 0}
        return f"{self.url}/operations/{op_id}?api-version=2026-01-01"

    async def _list(self, request: web.Request) -> web.Response:
        self.requests.append(("LIST", ""))
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        return web.json_response({"value": list(self.pools.values())})

    async def _pool(self, request: web.Request) -> web.Response:
        name = request.match_info["pool"]
        self.requests.append((request.method, name))
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        if request.method == "GET":
            if name not in self.pools:
                return self._error(404, "NotFound", f"agent pool {name} not found")
            return web.json_response(self.pools[name])
        if request.method == "PUT":
            body = json.loads(await request.text())
            props = body.get("properties") or {}
            vm_size = props.get("vmSize", "")
            if vm_size in self.quota_exceeded:
                return self._error(400, "QuotaExceeded",
                                   f"Operation could not be completed as it results in exceeding approved "
                                   f"standardNCSv3Family Cores quota for {vm_size}.")
            if name in self.pools:
                return web.json_response(self.pools[name], status=200)
            pool = {"id": f"{request.path}", "name": name, "type": "Microsoft.ContainerService/managedClusters/"
                    "agentPools", "properties": {**props, "provisioningState": "Creating"}}
            self.pools[name] = pool
            return web.json_response(pool, status=201, headers={"Azure-AsyncOperation": self._op("create", name)})
        if request.method == "DELETE":
            if name not in self.pools:
                return self._error(404, "NotFound", f"agent pool {name} not found")
            self.pools[name]["properties"]["provisioningState"] = "Deleting"
            op = self._op("delete", name)
            return web.Response(status=202, headers={"Azure-AsyncOperation": op, "Location": op})
        return self._error(405, "MethodNotAllowed", request.method)

    async def _operation(self, request: web.Request) -> web.Response:
        op = self._ops.get(request.match_info["op"])
        if op is None:
            return self._error(404, "NotFound", "no such operation")
        op["polls"] += 1
        if op["polls"] < self.polls_until_done:
            return web.json_response({"status": "InProgress"})
        pool = self.pools.get(op["pool"])
        if op["kind"] == "create" and pool is not None:
            if pool["properties"].get("vmSize") in self.fail_async:
                pool["properties"]["provisioningState"] = "Failed"
                return web.json_response({"status": "Failed", "error": {
                    "code": "AllocationFailed", "message": "Allocation failed: no capacity for this VM size."}})
            if pool["properties"]["provisioningState"] != "Succeeded":
                pool["properties"]["provisioningState"] = "Succeeded"
                if self.on_ready is not None:
                    await self.on_ready(pool)
        if op["kind"] == "delete" and pool is not None:
            self.pools.pop(op["pool"], None)
            if self.on_deleted is not None:
                await self.on_deleted(pool)
        return web.json_response({"status": "Succeeded"})
