"""Lease leader election with client-go semantics, on a fake clock and an in-memory Lease store."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Mapping
from typing import Any

import pytest

from kreconcile.clock import FakeClock
from kreconcile.errors import AlreadyExists, Conflict, NotFound, ServerError
from kreconcile.gvk import GVK
from kreconcile.leaderelection import LeaderElectionConfig, LeaderElectionLost, LeaderElector


class LeaseStore:
    """Server-side Lease semantics: resourceVersion checks on update, AlreadyExists on create."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0

    def client(self) -> FlakyClient:
        return FlakyClient(self)


class FlakyClient:
    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ServerError("connection refused")

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]:
        self._check()
        if self.store.lease is None:
            raise NotFound("lease not found")
        return copy.deepcopy(self.store.lease)

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        if self.store.lease is not None:
            raise AlreadyExists("exists")
        self.store.rv += 1
        self.store.lease = copy.deepcopy(dict(obj))
        self.store.lease["metadata"]["resourceVersion"] = str(self.store.rv)
        return copy.deepcopy(self.store.lease)

    async def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        assert self.store.lease is not None
        if obj["metadata"].get("resourceVersion") != self.store.lease["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        self.store.rv += 1
        self.store.lease = copy.deepcopy(dict(obj))
        self.store.lease["metadata"]["resourceVersion"] = str(self.store.rv)
        return copy.deepcopy(self.store.lease)


def cfg(identity: str, **kw: Any) -> LeaderElectionConfig:
    return LeaderElectionConfig(name="kaito-lock", namespace="kaito-system", identity=identity, **kw)


async def until(cond: Any, timeout: float = 2.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0)
    await asyncio.wait_for(poll(), timeout)


async def step(clock: FakeClock, seconds: float, dt: float = 0.25) -> None:
    t = 0.0
    while t < seconds:
        await clock.advance_and_settle(dt, rounds=20)
        t += dt


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lease_duration": 10, "renew_deadline": 10}, "lease_duration"),
        ({"renew_deadline": 2.4, "retry_period": 2}, "1.2 × retry_period"),
        ({"retry_period": 0}, "retry_period must be > 0"),
    ],
)
def test_config_is_validated_like_client_go(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cfg("a", **kw)


async def test_first_candidate_acquires_and_writes_lease_fields() -> None:
    store, clock = LeaseStore(), FakeClock()
    a = LeaderElector(store.client(), cfg("a"), clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    await until(a.elected.is_set)
    spec = store.lease["spec"]  # type: ignore[index]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"] == "2026-01-01T00:00:00.000000Z"
    await step(clock, 2.5)
    assert store.lease["spec"]["renewTime"] > spec["renewTime"]  # type: ignore[index]
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_leader_that_cannot_renew_stops_within_renew_deadline_and_standby_takes_over() -> None:
    store, clock = LeaseStore(), FakeClock()
    ca, cb = store.client(), store.client()
    a = LeaderElector(ca, cfg("a"), clock=clock, rng=random.Random(0))
    b = LeaderElector(cb, cfg("b"), clock=clock, rng=random.Random(1))
    stop = asyncio.Event()
    ta = asyncio.create_task(a.run(stop))
    await until(a.elected.is_set)
    tb = asyncio.create_task(b.run(stop))
    await step(clock, 6)
    assert not b.elected.is_set() and a.is_leader()  # a keeps renewing; b waits

    ca.down = True  # a is partitioned from the API server
    lost_at = None
    for _ in range(200):
        await step(clock, 0.25)
        if ta.done():
            lost_at = clock.now()
            break
    assert lost_at is not None
    with pytest.raises(LeaderElectionLost):
        ta.result()
    # a's last renewal was at most one retry period before the partition; it must give up within
    # retry_period + renew_deadline of it, and before b may take over (lease_duration after b last saw a change)
    assert lost_at - 6 <= 2 + 10 + 0.5
    assert not b.elected.is_set()
    await step(clock, 15)
    assert b.elected.is_set()
    assert store.lease["spec"]["holderIdentity"] == "b"  # type: ignore[index]
    assert store.lease["spec"]["leaseTransitions"] == 1  # type: ignore[index]
    stop.set()
    await asyncio.wait_for(tb, 2)


async def test_release_on_cancel_lets_the_next_candidate_in_without_waiting() -> None:
    store, clock = LeaseStore(), FakeClock()
    a = LeaderElector(store.client(), cfg("a", release_on_cancel=True), clock=clock)
    b = LeaderElector(store.client(), cfg("b"), clock=clock, rng=random.Random(3))
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    ta = asyncio.create_task(a.run(stop_a))
    await until(a.elected.is_set)
    tb = asyncio.create_task(b.run(stop_b))
    await step(clock, 1)
    stop_a.set()
    await asyncio.wait_for(ta, 2)
    assert store.lease["spec"].get("holderIdentity") in (None, "")  # type: ignore[index]
    await step(clock, 5)  # one jittered retry period (≤ 4.4 s), far less than the 15 s lease
    assert b.elected.is_set()
    stop_b.set()
    await asyncio.wait_for(tb, 2)
