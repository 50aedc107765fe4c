"""Manager over HTTP against the API server emulator: start order, probes, leader election (property 7)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kreconcile import metrics
from kreconcile.client import Client
from kreconcile.clock import FakeClock
from kreconcile.config import RestConfig, load_config
from kreconcile.gvk import GVK
from kreconcile.leaderelection import LEASE_GVK, LeaderElectionLost, format_micro_time
from kreconcile.manager import Manager, RunnableFunc
from kreconcile.testing.apiserver import APIServer
from tests.kreconcile.test_client import CM, configmap

LEASE_NS = "default"


class Probe:
    """A runnable that records its life cycle."""

    def __init__(self, leader: bool | None, log: list[str], name: str) -> None:
        self.leader, self.log, self.name = leader, log, name
        self.started = asyncio.Event()
        self.cancelled = False
        self.stopped_gracefully = False

    def needs_leader_election(self) -> bool:
        return bool(self.leader)

    async def start(self, stop: asyncio.Event) -> None:
        self.log.append(f"start {self.name}")
        self.started.set()
        try:
            await stop.wait()
            self.stopped_gracefully = True
            self.log.append(f"stop {self.name}")
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Failing:
    def needs_leader_election(self) -> bool:
        return False

    async def start(self, stop: asyncio.Event) -> None:
        raise RuntimeError("runnable exploded")


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with APIServer() as srv:
        yield srv


def cfg(server: APIServer) -> RestConfig:
    return load_config(str(server.kubeconfig_path)).with_rate(0)


def manager(server: APIServer, clock: FakeClock | None = None, **kw: Any) -> Manager:
    return Manager(cfg(server), metrics_bind_address="127.0.0.1:0", health_probe_bind_address="127.0.0.1:0",
                   clock=clock, **kw)


async def until(cond: Any, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


def master_status(body: str, lease: str) -> float | None:
    for fam in text_string_to_metric_families(body):
        if fam.name == "leader_election_master_status":
            for s in fam.samples:
                if s.labels.get("name") == lease:
                    return s.value
    return None


async def advance(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    """Move fake time forward in steps, letting real HTTP round trips complete in between."""
    t = 0.0
    while t < seconds:
        clock.advance(step)
        for _ in range(5):
            await asyncio.sleep(0.002)
        t += step


async def advance_until(clock: FakeClock, cond: Any, limit: float, step: float = 0.25) -> float:
    """Advance fake time until ``cond()`` holds (checked between steps); returns the fake time it took.
    Fails if it does not hold within ``limit`` fake seconds."""
    start = clock.now()
    while not cond():
        assert clock.now() - start <= limit, f"condition not reached within {limit} fake seconds"
        await advance(clock, step, step)
    return clock.now() - start


def gauge(lease: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("leader_election_master_status", {"name": lease})


async def test_leader_only_runnables_wait_for_election_while_probes_and_metrics_serve(server: APIServer) -> None:
    clock = FakeClock()
    async with Client(cfg(server)) as api:
        now = format_micro_time(clock.wall())
        await api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                          "metadata": {"name": "lock-wait", "namespace": LEASE_NS},
                          "spec": {"holderIdentity": "other-replica", "leaseDurationSeconds": 15,
                                   "acquireTime": now, "renewTime": now, "leaseTransitions": 3}})
        log: list[str] = []
        leader, always = Probe(True, log, "leader"), Probe(False, log, "always")
        mgr = manager(server, clock, leader_election=True, leader_election_id="lock-wait",
                      leader_election_namespace=LEASE_NS, identity="me")
        mgr.add(leader)
        mgr.add(always)
        stop = asyncio.Event()
        task = asyncio.create_task(mgr.start(stop))
        try:
            await asyncio.wait_for(always.started.wait(), 5)
            assert mgr.health_probe_url and mgr.metrics_url
            assert await http_get(f"{mgr.health_probe_url}/healthz") == (200, "ok")
            assert (await http_get(f"{mgr.health_probe_url}/readyz"))[0] == 200
            status, body = await http_get(f"{mgr.metrics_url}/metrics")
            assert status == 200 and master_status(body, "lock-wait") == 0
            await advance(clock, 5)
            assert not leader.started.is_set() and not mgr.elected().is_set()

            # the other replica stopped renewing: its lease expires 15 s after we first saw it, on our clock
            took = await advance_until(clock, leader.started.is_set, limit=30)
            assert took >= 15 - 5 - 0.5
            lease = await api.get(LEASE_GVK, "lock-wait", LEASE_NS)
            assert lease["spec"]["holderIdentity"] == "me" and lease["spec"]["leaseTransitions"] == 4
            assert master_status((await http_get(f"{mgr.metrics_url}/metrics"))[1], "lock-wait") == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
        assert log == ["start always", "start leader", "stop leader", "stop always"]


async def test_lost_leadership_stops_everything_within_renew_deadline_and_start_raises(server: APIServer) -> None:
    """Property 7."""
    clock = FakeClock()
    log: list[str] = []
    leader, always = Probe(True, log, "leader"), Probe(False, log, "always")
    mgr = manager(server, clock, leader_election=True, leader_election_id="lock-lost",
                  leader_election_namespace=LEASE_NS, identity="me")
    mgr.add(leader)
    mgr.add(always)
    task = asyncio.create_task(mgr.start())
    await asyncio.wait_for(leader.started.wait(), 5)
    await advance(clock, 4)  # a couple of renewals
    async with Client(cfg(server)) as api:
        lease = await api.get(LEASE_GVK, "lock-lost", LEASE_NS)
        lease["spec"].update(holderIdentity="thief", renewTime=format_micro_time(clock.wall()))
        await api.update(lease)  # another replica took over (e.g. after a partition healed)
    lost_after = await advance_until(clock, lambda: gauge("lock-lost") == 0, limit=30)
    # renewals happen every retry period (2 s) and give up after the renew deadline (10 s)
    assert lost_after <= 2 + 10 + 0.5
    with pytest.raises(LeaderElectionLost, match="renew"):
        await asyncio.wait_for(task, 5)  # stops at once: no fake time needs to pass
    assert leader.cancelled and always.cancelled  # stopped at once, no graceful wait
    assert not leader.stopped_gracefully


async def test_failing_runnable_stops_the_manager_and_start_reraises(server: APIServer) -> None:
    log: list[str] = []
    other = Probe(False, log, "other")
    mgr = manager(server)
    mgr.add(other)
    mgr.add(Failing())
    with pytest.raises(RuntimeError, match="runnable exploded"):
        await asyncio.wait_for(mgr.start(), 5)
    assert other.stopped_gracefully


async def test_cache_sync_timeout_fails_start(server: APIServer) -> None:
    mgr = manager(server, cache_sync_timeout=0.2)
    mgr.cache.get_informer(GVK("nope.example.com", "v1", "Missing"))  # never syncs: the kind is not served
    with pytest.raises(TimeoutError, match="did not sync"):
        await asyncio.wait_for(mgr.start(), 5)


async def test_client_reads_from_cache_writes_to_api_and_events_are_recorded(server: APIServer) -> None:
    mgr = manager(server)
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.start(stop))
    try:
        await until(lambda: mgr.elected().is_set())
        created = await mgr.client.create(configmap("a", v="1"))
        got = await mgr.client.get(CM, "a", "default")  # starts the ConfigMap informer, waits for its sync
        assert got["data"] == {"v": "1"}
        got["data"]["v"] = "mutated"
        assert (await mgr.client.get(CM, "a", "default"))["data"] == {"v": "1"}
        await mgr.client.patch(created, {"data": {"v": "2"}})
        await until(lambda: mgr.cache.get_informer(CM).get_by_name("a", "default")["data"]["v"] == "2")  # type: ignore[index]
        listed = await mgr.client.list(CM, "default", field_selector="metadata.name=a")
        assert [o["metadata"]["name"] for o in listed["items"]] == ["a"]
        live = await mgr.api_reader.get(CM, "a", "default")
        assert "managedFields" in live["metadata"]  # the live read is not transformed

        rec = mgr.event_recorder("b-test-controller")
        rec.event(live, "Normal", "Mirrored", "copied v=2", "Mirror")
        await rec.flush()
        events = await mgr.api_reader.list(GVK("events.k8s.io", "v1", "Event"), "default")
        (ev,) = [e for e in events["items"] if e.get("reportingController") == "b-test-controller"]
        assert ev["regarding"]["name"] == "a" and ev["reason"] == "Mirrored"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_bad_options_are_rejected_with_the_option_name(server: APIServer) -> None:
    with pytest.raises(ValueError, match="leader_election_id"):
        Manager(cfg(server), leader_election=True)
    with pytest.raises(ValueError, match="renew_deadline"):
        Manager(cfg(server), leader_election=True, leader_election_id="x", leader_election_namespace="d",
                lease_duration=5, renew_deadline=6)
    with pytest.raises(ValueError, match="bind address"):
        Manager(cfg(server), metrics_bind_address="nonsense")


async def test_runnable_func_webhook_group_starts_before_caches_and_stops_after(server: APIServer) -> None:
    log: list[str] = []
    mgr = manager(server)
    informer = mgr.cache.get_informer(CM)

    async def webhook(stop: asyncio.Event) -> None:
        log.append(f"webhook start, caches synced={informer.has_synced()}, elected={mgr.elected().is_set()}")
        await stop.wait()
        log.append("webhook stop")

    mgr.add(RunnableFunc(webhook, group="webhooks"))
    leader = Probe(True, log, "leader")
    mgr.add(leader)
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.start(stop))
    await asyncio.wait_for(leader.started.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert log == ["webhook start, caches synced=False, elected=False", "start leader", "stop leader", "webhook stop"]
    assert informer.has_synced()


class Stubborn:
    """Ignores stop for ``linger`` seconds of the manager's clock."""

    def __init__(self, clock: FakeClock, linger: float) -> None:
        self.clock, self.linger = clock, linger
        self.started = asyncio.Event()
        self.stop_seen = asyncio.Event()
        self.finished = False
        self.cancelled = False

    def needs_leader_election(self) -> bool:
        return False

    async def start(self, stop: asyncio.Event) -> None:
        self.started.set()
        await stop.wait()
        self.stop_seen.set()
        try:
            await self.clock.sleep(self.linger)
            self.finished = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_graceful_shutdown_waits_for_runnables_up_to_the_timeout_then_cancels(server: APIServer) -> None:
    clock = FakeClock()
    quick, slow = Stubborn(clock, 3), Stubborn(clock, 60)
    mgr = manager(server, clock, graceful_shutdown_timeout=10)
    mgr.add(quick)
    mgr.add(slow)
    stop = asyncio.Event()
    task = asyncio.create_task(mgr.start(stop))
    await asyncio.wait_for(asyncio.gather(quick.started.wait(), slow.started.wait()), 5)
    stop.set()
    await asyncio.wait_for(asyncio.gather(quick.stop_seen.wait(), slow.stop_seen.wait()), 5)  # grace starts now
    await advance(clock, 5)
    assert quick.finished and not task.done()  # still inside the grace period for the slow one
    await advance(clock, 6)
    await asyncio.wait_for(task, 5)
    assert slow.cancelled and not slow.finished


async def test_sigterm_stops_the_manager_gracefully(server: APIServer) -> None:
    log: list[str] = []
    leader = Probe(True, log, "leader")
    mgr = manager(server)
    mgr.add(leader)
    task = asyncio.create_task(mgr.run_until_signal())
    await asyncio.wait_for(leader.started.wait(), 5)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 5)
    assert leader.stopped_gracefully


async def test_two_replicas_one_leader_and_release_on_cancel_hands_over(server: APIServer) -> None:
    clock = FakeClock()
    log: list[str] = []
    opts = {"leader_election": True, "leader_election_id": "lock-pair", "leader_election_namespace": LEASE_NS,
            "leader_election_release_on_cancel": True}
    r1, r2 = manager(server, clock, identity="r1", **opts), manager(server, clock, identity="r2", **opts)
    p1, p2 = Probe(True, log, "p1"), Probe(True, log, "p2")
    r1.add(p1)
    r2.add(p2)
    stop1, stop2 = asyncio.Event(), asyncio.Event()
    t1 = asyncio.create_task(r1.start(stop1))
    await asyncio.wait_for(p1.started.wait(), 5)
    t2 = asyncio.create_task(r2.start(stop2))
    await advance(clock, 10)
    assert not p2.started.is_set()  # r1 keeps renewing; r2 stays a standby
    stop1.set()
    await asyncio.wait_for(t1, 5)
    took = await advance_until(clock, p2.started.is_set, limit=5)  # one jittered retry period (≤ 4.4 s)
    assert took < 15  # far less than the lease duration
    async with Client(cfg(server)) as api:
        lease = await api.get(LEASE_GVK, "lock-pair", LEASE_NS)
    assert lease["spec"]["holderIdentity"] == "r2" and lease["spec"]["leaseTransitions"] == 1
    stop2.set()
    await asyncio.wait_for(t2, 5)
