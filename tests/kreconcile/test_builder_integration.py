"""Builder + Manager + client over HTTP against the API server emulator: owns() brings deleted children back."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from kreconcile import metrics
from kreconcile.builder import Builder
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import AlreadyExists, NotFound, ignore_not_found
from kreconcile.gvk import GVK
from kreconcile.manager import Manager
from kreconcile.ownerrefs import get_controller_of, set_controller_reference
from kreconcile.predicates import LabelSelector
from kreconcile.reconcile import Request, Result
from kreconcile.testing.apiserver import APIServer

CONFIGMAP = GVK("", "v1", "ConfigMap")
SECRET = GVK("", "v1", "Secret")


class ChildSecret:
    """Keeps a Secret ``<name>-child`` controlled by every ConfigMap labelled ``app=parent``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[Request] = []

    async def reconcile(self, request: Request) -> Result:
        self.calls.append(request)
        parent = await ignore_not_found(self.client.get(CONFIGMAP, request.name, request.namespace))
        if parent is None:
            return Result()
        child: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                 "metadata": {"name": f"{request.name}-child", "namespace": request.namespace},
                                 "stringData": {"from": request.name}}
        set_controller_reference(parent, child)
        try:
            await self.client.create(child)
        except AlreadyExists:
            pass
        return Result()


async def poll(check: Any, what: str, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_owned_child_deleted_behind_the_controllers_back_is_recreated() -> None:
    async with APIServer() as server:
        cfg = load_config(str(server.kubeconfig_path))
        client = Client(cfg)
        mgr = Manager(cfg, metrics_bind_address="0", health_probe_bind_address="0")
        rec = ChildSecret(mgr.client)
        name = f"owns-integration-{uuid.uuid4().hex[:6]}"
        ctl = (Builder(mgr).named(name).for_(CONFIGMAP, predicates=[LabelSelector("app=parent")]).owns(SECRET)
               .complete(rec))
        stop = asyncio.Event()
        task = asyncio.create_task(mgr.start(stop))
        try:
            await client.create({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"},
                                 "metadata": {"name": "p", "namespace": "default", "labels": {"app": "parent"}}})

            async def child() -> dict[str, Any] | None:
                try:
                    return await client.get(SECRET, "p-child", "default")
                except NotFound:
                    return None

            first = await poll(child, "the child Secret")
            ref = get_controller_of(first)
            assert ref is not None and (ref["kind"], ref["name"]) == ("ConfigMap", "p")
            await client.delete(first)
            second = await poll(
                lambda: _different(child, first["metadata"]["uid"]), "the child Secret to be recreated")
            assert get_controller_of(second) == ref
            assert all(r == Request("default", "p") for r in rec.calls)
            labels = {"controller": ctl.name}
            assert (metrics.REGISTRY.get_sample_value("controller_runtime_reconcile_total",
                                                      {**labels, "result": "success"}) or 0) >= 2
            assert metrics.REGISTRY.get_sample_value("controller_runtime_reconcile_errors_total", labels) == 0
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await client.close()


async def _different(get: Any, old_uid: str) -> dict[str, Any] | None:
    obj = await get()
    return obj if obj is not None and obj["metadata"]["uid"] != old_uid else None
