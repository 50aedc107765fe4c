"""The client, informer and leader election against a real kube-apiserver v1.20.2 (hack/real-apiserver.sh).

Proves the behaviour the emulator-based tests assume: typed errors from real Status objects, every patch content
type, server-side apply, CRD validation causes, list+watch, real Leases, client-certificate kubeconfigs. Slow: the
first run builds the binaries (about 8 minutes on 2 idle cores); with a warm cache the module takes ~15 s.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from kreconcile.client import Client
from kreconcile.clock import FakeClock
from kreconcile.config import load_config
from kreconcile.errors import AlreadyExists, Conflict, Invalid, NotFound, UnsupportedMediaType
from kreconcile.gvk import GVK
from kreconcile.informer import SharedInformer
from kreconcile.leaderelection import LEASE_GVK, LeaderElectionConfig, LeaderElector
from kreconcile.testing.realserver import RealAPIServer
from tests.kreconcile.test_client import CM, WIDGET, WIDGET_CRD, configmap
from tests.kreconcile.test_informer import Recorder

BUILD_AND_START_TIMEOUT = 3600
pytestmark = [
    pytest.mark.realserver,
    pytest.mark.slow,
    pytest.mark.timeout(BUILD_AND_START_TIMEOUT),
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[RealAPIServer]:
    async with RealAPIServer(controllers=("garbagecollector", "namespace")) as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(server: RealAPIServer) -> AsyncIterator[Client]:
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ns(client: Client) -> str:
    name = f"b-{uuid.uuid4().hex[:8]}"
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


async def test_crud_typed_errors_and_conflict_on_stale_update(client: Client, ns: str) -> None:
    first = await client.create(configmap("a", ns, v="1"))
    with pytest.raises(AlreadyExists):
        await client.create(configmap("a", ns))
    await client.update(dict(first, data={"v": "2"}))
    with pytest.raises(Conflict):
        await client.update(dict(first, data={"v": "3"}))
    await client.delete(first)
    with pytest.raises(NotFound):
        await client.get(CM, "a", ns)


async def test_patch_content_types_and_server_side_apply(client: Client, ns: str) -> None:
    obj = await client.create(configmap("p", ns, x="1"))
    assert (await client.patch(obj, {"data": {"y": "2"}}))["data"] == {"x": "1", "y": "2"}
    assert (await client.patch(obj, [{"op": "remove", "path": "/data/x"}], "json"))["data"] == {"y": "2"}
    assert (await client.patch(obj, {"data": {"z": "3"}}, "strategic"))["data"] == {"y": "2", "z": "3"}
    applied = await client.apply(configmap("p", ns, owned="yes"), field_manager="b-real")
    assert applied["data"]["owned"] == "yes"
    assert any(m.get("manager") == "b-real" for m in applied["metadata"]["managedFields"])


async def test_crd_status_subresource_strategic_415_and_invalid_causes(client: Client, ns: str) -> None:
    await client.create(WIDGET_CRD)
    for _ in range(100):  # the real server serves the CRD once it is Established
        crd = await client.get(WIDGET_CRD_GVK, "widgets.test.kreconcile.io")
        if any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or []):
            break
        await asyncio.sleep(0.1)
    w = await client.create(dict(_widget(ns, "w1", 1)))
    status = await client.status().patch(w, {"status": {"observed": 1}})
    assert status["status"] == {"observed": 1} and status["metadata"]["generation"] == 1
    with pytest.raises(UnsupportedMediaType):
        await client.patch(w, {"spec": {"value": 2}}, "strategic")
    with pytest.raises(Invalid) as err:
        await client.create(_widget(ns, "bad", -1))
    assert any("spec.value" in c.field for c in err.value.causes)
    assert [i["metadata"]["name"] for i in (await client.list(WIDGET, ns))["items"]] == ["w1"]


async def test_informer_lists_then_watches_changes(client: Client, ns: str) -> None:
    await client.create(configmap("i1", ns))
    informer = SharedInformer(client, CM, namespace=ns, rng=random.Random(0))
    rec = Recorder()
    informer.add_event_handler(rec)
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    try:
        assert await informer.wait_for_sync(30)
        obj = await client.create(configmap("i2", ns))
        await client.patch(obj, {"data": {"k": "v"}})
        await client.delete(obj)
        await _until(lambda: ("delete", f"{ns}/i2") in [(k, key) for k, key, _ in rec.events])
        kinds = [k for k, key, _ in rec.events if key == f"{ns}/i2"]
        assert kinds == ["add", "update", "delete"]
        assert informer.get(f"{ns}/i1") is not None and informer.get(f"{ns}/i2") is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_leader_election_on_a_real_lease(client: Client, ns: str) -> None:
    clock = FakeClock()
    elector = LeaderElector(client, LeaderElectionConfig(name="b-lock", namespace=ns, identity="me"), clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(elector.run(stop))
    await asyncio.wait_for(elector.elected.wait(), 30)
    lease = await client.get(LEASE_GVK, "b-lock", ns)
    assert lease["spec"]["holderIdentity"] == "me" and lease["spec"]["leaseDurationSeconds"] == 15
    renew_before = lease["spec"]["renewTime"]
    clock.advance(2.5)
    await _until_async(lambda: _renewed(client, ns, renew_before))
    stop.set()
    await asyncio.wait_for(task, 10)


WIDGET_CRD_GVK = GVK("apiextensions.k8s.io", "v1", "CustomResourceDefinition")


def _widget(ns: str, name: str, value: int) -> dict[str, Any]:
    return {"apiVersion": "test.kreconcile.io/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": ns}, "spec": {"value": value}}


async def _renewed(client: Client, ns: str, before: str) -> bool:
    return bool((await client.get(LEASE_GVK, "b-lock", ns))["spec"]["renewTime"] != before)


async def _until(cond: Any, timeout: float = 30.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


async def _until_async(cond: Any, timeout: float = 30.0) -> None:
    async def poll() -> None:
        while not await cond():
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)
