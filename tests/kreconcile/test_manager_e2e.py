"""End to end over HTTP: Builder + Manager + cache + create_or_update drive a ConfigMap mirror controller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kreconcile.builder import Builder
from kreconcile.errors import NotFound
from kreconcile.manager import Manager
from kreconcile.ownerrefs import set_controller_reference
from kreconcile.predicates import LabelSelector
from kreconcile.reconcile import Request, Result
from kreconcile.testing.apiserver import APIServer
from kreconcile.util import create_or_update
from tests.kreconcile.test_client import CM, configmap
from tests.kreconcile.test_manager import cfg


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with APIServer() as srv:
        yield srv


async def eventually(fn: Any, timeout: float = 10.0) -> Any:
    async def poll() -> Any:
        while True:
            try:
                result = await fn()
                if result:
                    return result
            except NotFound:
                pass
            await asyncio.sleep(0.01)
    return await asyncio.wait_for(poll(), timeout)


async def test_mirror_controller_converges_on_create_update_and_deleted_copy(server: APIServer) -> None:
    mgr = Manager(cfg(server), metrics_bind_address="0", health_probe_bind_address="0")
    results: list[str] = []

    async def reconcile(req: Request) -> Result:
        try:
            src = await mgr.client.get(CM, req.name, req.namespace)
        except NotFound:
            return Result()
        if (src["metadata"].get("labels") or {}).get("mirror") != "yes":
            return Result()
        copy = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"{req.name}-copy", "namespace": req.namespace}}

        def mutate(obj: dict[str, Any]) -> None:
            obj["data"] = dict(src.get("data") or {})
            set_controller_reference(src, obj)

        results.append(str(await create_or_update(mgr.client, copy, mutate)))
        return Result()

    (Builder(mgr).for_(CM, predicates=[LabelSelector({"matchLabels": {"mirror": "yes"}})])
     .owns(CM).complete(reconcile))
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.start(stop))
    api = mgr.api_reader
    try:
        src = await api.create(configmap("src", labels={"mirror": "yes"}, v="1"))
        copy = await eventually(lambda: api.get(CM, "src-copy", "default"))
        assert copy["data"] == {"v": "1"}
        assert copy["metadata"]["ownerReferences"][0]["uid"] == src["metadata"]["uid"]

        await api.patch(src, {"data": {"v": "2"}})
        await eventually(lambda: _data_is(api, "src-copy", {"v": "2"}))

        await api.delete(copy)  # the owned copy disappears: owns() enqueues its owner, which recreates it
        recreated = await eventually(lambda: api.get(CM, "src-copy", "default"))
        assert recreated["metadata"]["uid"] != copy["metadata"]["uid"]
        assert "created" in results and "updated" in results
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _data_is(api: Any, name: str, data: dict[str, str]) -> bool:
    return bool((await api.get(CM, name, "default")).get("data") == data)
