"""Rule 12: fault injection (an emulator feature: skipped against a real server)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kreconcile.testing import APIServer

from .conftest import Cluster, read_events


def _emulator(cluster: Cluster) -> APIServer:
    if cluster.emulator is None:
        pytest.skip("fault injection is an emulator feature; the real server has no such hook")
    return cluster.emulator


async def test_injected_errors_have_the_real_status_shape(cluster: Cluster) -> None:
    faults = _emulator(cluster).faults
    faults.inject(429, verb="create", resource="configmaps", retry_after=2)
    faults.inject(409, verb="update", resource="configmaps")
    faults.inject(500, verb="get", resource="configmaps", times=2)
    async with cluster.http.post(cluster.ns_path("configmaps"), json={"metadata": {"name": "a"}}) as r:
        body = await r.json()
        assert (r.status, body["reason"], r.headers["Retry-After"]) == (429, "TooManyRequests", "2")
        assert body["details"]["retryAfterSeconds"] == 2
    created = await cluster.create("configmaps", {"metadata": {"name": "a"}})
    status, body = await cluster.request("PUT", cluster.ns_path("configmaps", name="a"), created)
    assert (status, body["reason"]) == (409, "Conflict")
    for _ in range(2):
        status, body = await cluster.request("GET", cluster.ns_path("configmaps", name="a"))
        assert (status, body["reason"]) == (500, "InternalError")
    status, _ = await cluster.request("GET", cluster.ns_path("configmaps", name="a"))
    assert status == 200


async def test_forced_expiry_and_dropped_watches(cluster: Cluster) -> None:
    server = _emulator(cluster)
    server.faults.expire_next_watch("configmaps")
    async with cluster.http.get(cluster.ns_path("configmaps"), params={"watch": "1", "resourceVersion": "1"}) as w:
        events = await read_events(w, 1)
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
    async with cluster.http.get(cluster.ns_path("configmaps"), params={"watch": "1"}) as w:
        await cluster.create("configmaps", {"metadata": {"name": "seen"}})
        first = await read_events(w, 1)
        assert server.faults.drop_watches("configmaps") == 1
        with pytest.raises(aiohttp.ClientPayloadError):  # the connection is cut mid-stream, not ended cleanly
            await w.content.read()
    assert first[0]["object"]["metadata"]["name"] == "seen"


async def test_added_latency_is_applied(cluster: Cluster) -> None:
    server = _emulator(cluster)
    server.faults.add_latency(0.2, verb="list")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await cluster.request("GET", cluster.ns_path("configmaps"))
    assert loop.time() - start >= 0.2
    server.faults.clear()
