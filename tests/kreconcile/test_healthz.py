"""Probe and metrics servers over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kreconcile import metrics
from kreconcile.healthz import MetricsServer, ProbeServer, parse_bind_address


@pytest.fixture
async def probes() -> AsyncIterator[ProbeServer]:
    server = ProbeServer("127.0.0.1", 0)
    await server.start()
    yield server
    await server.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_all_checks_pass_answers_ok_and_verbose_lists_them(probes: ProbeServer) -> None:
    probes.add_readyz_check("informers", lambda: True)
    assert await get(f"{probes.url}/readyz") == (200, "ok")
    assert await get(f"{probes.url}/readyz?verbose") == (200, "[+]ping ok\n[+]informers ok\nreadyz check passed\n")
    assert await get(f"{probes.url}/healthz") == (200, "ok")


async def test_failing_check_gives_500_with_listing_and_exclude_skips_it(probes: ProbeServer) -> None:
    async def broken() -> None:
        raise RuntimeError("cache not synced")

    probes.add_readyz_check("cache", broken)
    status, body = await get(f"{probes.url}/readyz")
    assert status == 500
    assert body == "[+]ping ok\n[-]cache failed: reason withheld\nreadyz check failed\n"
    assert await get(f"{probes.url}/readyz?exclude=cache") == (200, "ok")
    assert await get(f"{probes.url}/readyz/cache") == (500, "internal server error: cache not synced\n")
    assert await get(f"{probes.url}/readyz/ping") == (200, "ok")
    assert (await get(f"{probes.url}/readyz/nope"))[0] == 404
    with pytest.raises(ValueError, match="already registered"):
        probes.add_readyz_check("cache", broken)


async def test_metrics_endpoint_serves_the_kreconcile_registry() -> None:
    server = MetricsServer("127.0.0.1", 0, metrics.REGISTRY)
    await server.start()
    try:
        metrics.leader_election_master_status.labels(name="healthz-test").set(1)
        status, body = await get(f"{server.url}/metrics")
    finally:
        await server.stop()
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = [s for s in families["leader_election_master_status"].samples if s.labels["name"] == "healthz-test"]
    assert samples[0].value == 1


def test_bind_address_parsing() -> None:
    assert parse_bind_address(":8080") == ("0.0.0.0", 8080)
    assert parse_bind_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_bind_address("0") is None
    with pytest.raises(ValueError, match="8081"):
        parse_bind_address("localhost")
