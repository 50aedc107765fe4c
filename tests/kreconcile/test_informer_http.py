"""SharedInformer and Cache over HTTP against the API server emulator, including property 4 (410 relist)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.clock import FakeClock
from kreconcile.config import load_config
from kreconcile.gvk import GVK
from kreconcile.informer import SharedInformer
from kreconcile.testing.apiserver import APIServer
from tests.kreconcile.test_client import CM, configmap
from tests.kreconcile.test_informer import Recorder


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with APIServer() as srv:
        yield srv


@pytest.fixture
async def client(server: APIServer) -> AsyncIterator[Client]:
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as c:
        yield c


async def until(cond: Any, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


async def test_relist_after_forced_410_loses_no_update_and_synthesizes_deletes(
    server: APIServer, client: Client
) -> None:
    """Property 4 over HTTP: changes made while the watch is down are all delivered after the 410 relist."""
    a = await client.create(configmap("a", v="1"))
    await client.create(configmap("b"))
    await client.create(configmap("other", ns="kube-system"))
    clock = FakeClock()
    informer = SharedInformer(client, CM, namespace="default", clock=clock, rng=random.Random(0))
    rec = Recorder()
    informer.add_event_handler(rec)
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    try:
        assert await informer.wait_for_sync(5)
        assert sorted(k for _, k, _ in rec.events) == ["default/a", "default/b"]
        await until(lambda: bool(server.store.watchers))

        server.faults.expire_next_watch("configmaps")
        assert server.faults.drop_watches("configmaps") == 1
        await until(lambda: clock.sleepers == 1)  # backing off after the dropped connection
        # changes the informer cannot see on a watch
        a = await client.patch(a, {"data": {"v": "2"}})
        await client.delete(await client.get(CM, "b", "default"))
        c = await client.create(configmap("c"))
        before = len(rec.events)
        clock.advance(clock.next_deadline() - clock.now())  # type: ignore[operator]
        await until(lambda: informer.lists == 2 and len(rec.events) >= before + 3)

        delivered = sorted((kind, key) for kind, key, _ in rec.events[before:])
        assert delivered == [("add-initial", "default/c"), ("delete", "default/b"), ("update", "default/a")]
        assert informer.get("default/a")["metadata"]["resourceVersion"] == a["metadata"]["resourceVersion"]
        assert informer.get("default/c")["metadata"]["uid"] == c["metadata"]["uid"]
        assert informer.get("default/b") is None

        # and the new watch (from the relist's resourceVersion) delivers later changes
        await client.patch(c, {"data": {"after": "relist"}})
        await until(lambda: (informer.get("default/c") or {}).get("data") == {"after": "relist"})
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_cache_reads_over_http_are_copies_and_track_the_server(client: Client) -> None:
    await client.create(configmap("a", labels={"app": "web"}, v="1"))
    cache = Cache(client)
    stop = asyncio.Event()
    task = asyncio.create_task(cache.start(stop))
    try:
        await asyncio.sleep(0)
        got = await cache.get(CM, "a", "default")
        assert "managedFields" not in got["metadata"]  # stripped by the default transform
        got["data"]["v"] = "corrupted"
        assert (await cache.get(CM, "a", "default"))["data"] == {"v": "1"}
        await client.patch(got, {"data": {"v": "2"}})
        await until(lambda: cache.get_informer(CM).get_by_name("a", "default")["data"] == {"v": "2"})  # type: ignore[index]
        assert [o["metadata"]["name"] for o in await cache.list(CM, "default", label_selector="app=web")] == ["a"]
        assert await cache.wait_for_cache_sync(1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_namespace_scoped_cache_watches_only_its_namespaces_but_all_of_a_cluster_scoped_kind(
    client: Client,
) -> None:
    for ns in ("team-a", "team-b", "team-c"):
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await client.create(configmap(f"cm-{ns}", ns=ns))
    cache = Cache(client, default_namespaces=["team-a", "team-b"])
    stop = asyncio.Event()
    task = asyncio.create_task(cache.start(stop))
    try:
        await asyncio.sleep(0)
        assert sorted(o["metadata"]["name"] for o in await cache.list(CM)) == ["cm-team-a", "cm-team-b"]
        namespaces = {o["metadata"]["name"] for o in await cache.list(GVK("", "v1", "Namespace"))}
        assert {"team-a", "team-b", "team-c", "default"} <= namespaces  # cluster-scoped: one unscoped informer
        assert (await cache.get(GVK("", "v1", "Namespace"), "team-c"))["metadata"]["name"] == "team-c"
        await client.create(configmap("late", ns="team-b"))
        await client.create(configmap("late", ns="team-c"))
        await until(lambda: cache.get_informer(CM).get_by_name("late", "team-b") is not None)
        assert cache.get_informer(CM).get_by_name("late", "team-c") is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
