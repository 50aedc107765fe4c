"""The controller properties of reference/reconciler-anchors.md (1, 2, 3, 5, 6, 8, 9, 10), one test each.

Each test drives a real Controller with a FakeInformer and a FakeClock; time only moves when the test advances it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from kreconcile import metrics
from kreconcile.clock import FakeClock
from kreconcile.controller import CacheSyncTimeoutError, Controller
from kreconcile.reconcile import Request, Result, TerminalError
from kreconcile.testing.fakes import FakeInformer, RecordingReconciler, eventually

Behaviour = Callable[[Request, int], Awaitable[Result | None]]


def cm(name: str, namespace: str = "default", **data: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def req(name: str) -> Request:
    return Request("default", name)


def sample(metric: str, controller: Controller, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(metric, {"controller": controller.name, **labels})
    assert value is not None, f"{metric} not exported for {controller.name}"
    return value


@asynccontextmanager
async def running(
    informer: FakeInformer,
    behaviour: Behaviour | None = None,
    *,
    clock: FakeClock | None = None,
    workers: int = 1,
    **options: object,
) -> AsyncIterator[tuple[Controller, RecordingReconciler, FakeClock, asyncio.Task[None], asyncio.Event]]:
    clock = clock or FakeClock()
    rec = RecordingReconciler(behaviour)
    ctl = Controller(f"test-{uuid.uuid4().hex[:8]}", rec, max_concurrent_reconciles=workers, clock=clock, **options)  # type: ignore[arg-type]
    ctl.watch(informer)
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    try:
        yield ctl, rec, clock, task, stop
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(asyncio.shield(task), 5)


async def idle(ctl: Controller) -> None:
    await eventually(lambda: ctl.queue.processing_count == 0 and len(ctl.queue) == 0, message="controller never idle")


async def test_property_1_a_key_is_never_reconciled_by_two_workers_at_once() -> None:
    informer = FakeInformer([cm("a"), cm("b"), cm("c")])
    gate = asyncio.Event()

    async def slow(request: Request, attempt: int) -> None:
        await gate.wait()

    async with running(informer, slow, workers=4) as (ctl, rec, _, _, _):
        await eventually(lambda: len(rec.in_flight) == 3)
        for i in range(10):  # a burst of events for "a" while it is being reconciled
            informer.update(cm("a", v=str(i)))
            await asyncio.sleep(0)
        assert rec.in_flight[req("a")] == 1
        gate.set()
        await idle(ctl)
    assert rec.max_in_flight_per_key == 1
    assert rec.max_in_flight == 3  # different keys did run in parallel: the limit is per key, not global
    assert rec.count(req("a")) == 2


async def test_property_2_events_during_a_reconcile_cause_exactly_one_more_reconcile() -> None:
    informer = FakeInformer([cm("a")])
    first_started, release = asyncio.Event(), asyncio.Event()

    async def blocking_first(request: Request, attempt: int) -> None:
        if attempt == 1:
            first_started.set()
            await release.wait()

    async with running(informer, blocking_first, workers=2) as (ctl, rec, _, _, _):
        await asyncio.wait_for(first_started.wait(), 5)
        for i in range(5):
            informer.update(cm("a", v=str(i)))
        informer.resync()
        release.set()
        await eventually(lambda: rec.count(req("a")) == 2)
        await idle(ctl)
        assert rec.count(req("a")) == 2
        assert rec.max_in_flight_per_key == 1


async def test_property_3_queued_keys_are_deduplicated_and_depth_counts_them_once() -> None:
    informer = FakeInformer([cm("blocker")])
    release = asyncio.Event()

    async def block(request: Request, attempt: int) -> None:
        if request.name == "blocker":
            await release.wait()

    async with running(informer, block, workers=1) as (ctl, rec, _, _, _):
        await eventually(lambda: rec.count(req("blocker")) == 1)
        informer.create(cm("a"))
        for i in range(5):
            informer.update(cm("a", v=str(i)))
        informer.create(cm("b"))
        informer.update(cm("b", v="1"))
        assert sample("workqueue_depth", ctl, name=ctl.name) == 2
        assert sample("workqueue_adds_total", ctl, name=ctl.name) == 3  # blocker, a, b
        release.set()
        await idle(ctl)
        assert (rec.count(req("a")), rec.count(req("b"))) == (1, 1)
        assert sample("workqueue_depth", ctl, name=ctl.name) == 0


async def test_property_5_requeue_after_never_fires_early_earliest_wins_and_an_event_makes_the_key_ready() -> None:
    informer = FakeInformer([cm("a")])

    async def requeue_in_10s(request: Request, attempt: int) -> Result:
        return Result(requeue_after=10)

    async with running(informer, requeue_in_10s) as (ctl, rec, clock, _, _):
        await eventually(lambda: rec.count(req("a")) == 1)
        await idle(ctl)
        await clock.advance_and_settle(9.999)
        assert rec.count(req("a")) == 1  # not early
        await clock.advance_and_settle(0.001)
        await eventually(lambda: rec.count(req("a")) == 2)
        assert sample("controller_runtime_reconcile_total", ctl, result="requeue_after") == 2
        await idle(ctl)

        ctl.queue.add_after(req("a"), 3)  # an earlier request than the pending 10 s one wins
        await clock.advance_and_settle(2.999)
        assert rec.count(req("a")) == 2
        await clock.advance_and_settle(0.001)
        await eventually(lambda: rec.count(req("a")) == 3)
        await idle(ctl)

        informer.update(cm("a", v="new"))  # a new event does not wait for the 10 s requeue
        await eventually(lambda: rec.count(req("a")) == 4)
        assert clock.now() == pytest.approx(13.0)


async def test_property_6_error_backoff_doubles_from_5ms_resets_only_on_success_and_terminal_never_requeues() -> None:
    informer = FakeInformer([cm("a")])
    outcomes: dict[int, str] = {1: "err", 2: "err", 3: "err", 4: "err", 5: "ok", 6: "err", 7: "terminal"}

    async def scripted(request: Request, attempt: int) -> Result | None:
        outcome = outcomes.get(attempt, "ok")
        if outcome == "err":
            raise RuntimeError("transient")
        if outcome == "terminal":
            raise TerminalError("spec is invalid")
        return None

    async with running(informer, scripted) as (ctl, rec, clock, _, _):
        delays: list[float] = []
        for attempt in range(1, 5):
            await eventually(lambda a=attempt: rec.count(req("a")) == a and ctl.queue.next_ready_at() is not None)  # type: ignore[misc]
            ready_at = ctl.queue.next_ready_at()
            assert ready_at is not None
            delays.append(ready_at - clock.now())
            await clock.advance_and_settle(delays[-1] - 0.0001)
            assert rec.count(req("a")) == attempt  # never early
            await clock.advance_and_settle(0.0001)
        assert delays == pytest.approx([0.005, 0.010, 0.020, 0.040])
        await eventually(lambda: rec.count(req("a")) == 5)  # attempt 5 succeeds: backoff forgotten
        await idle(ctl)
        assert ctl.queue.num_requeues(req("a")) == 0

        informer.update(cm("a", v="1"))  # attempt 6 fails again: backoff starts over at 5 ms
        await eventually(lambda: rec.count(req("a")) == 6 and ctl.queue.next_ready_at() is not None)
        assert ctl.queue.next_ready_at() - clock.now() == pytest.approx(0.005)  # type: ignore[operator]
        await clock.advance_and_settle(0.005)
        await eventually(lambda: rec.count(req("a")) == 7)  # attempt 7: terminal
        await idle(ctl)
        await clock.advance_and_settle(2000)
        assert rec.count(req("a")) == 7
        assert ctl.queue.next_ready_at() is None
        assert sample("controller_runtime_terminal_reconcile_errors_total", ctl) == 1
        assert sample("controller_runtime_reconcile_errors_total", ctl) == 6
        assert sample("controller_runtime_reconcile_total", ctl, result="error") == 6
        assert sample("controller_runtime_reconcile_total", ctl, result="success") == 1
        assert sample("workqueue_retries_total", ctl, name=ctl.name) == 5


async def test_property_6_an_error_beats_a_pending_requeue_after() -> None:
    informer = FakeInformer([cm("a")])

    async def requeue_then_fail(request: Request, attempt: int) -> Result:
        if attempt == 2:
            raise RuntimeError("boom")
        return Result(requeue_after=60)

    async with running(informer, requeue_then_fail) as (ctl, rec, clock, _, _):
        await eventually(lambda: rec.count(req("a")) == 1)
        await idle(ctl)
        informer.update(cm("a", v="1"))
        await eventually(lambda: rec.count(req("a")) == 2)
        await idle(ctl)
        await clock.advance_and_settle(0.005)  # the error's 5 ms backoff, not the 60 s requeue
        await eventually(lambda: rec.count(req("a")) == 3)


def test_property_6_backoff_is_capped_at_1000_seconds() -> None:
    ctl = Controller(f"test-{uuid.uuid4().hex[:8]}", RecordingReconciler(), clock=FakeClock())
    delays = [ctl.queue.rate_limiter.when(req("a")) for _ in range(25)]
    assert delays[:3] == pytest.approx([0.005, 0.01, 0.02])
    assert max(delays) == 1000.0 and delays[-1] == 1000.0


async def test_property_8_shutdown_finishes_in_flight_reconciles_drops_queued_keys_and_leaks_no_tasks() -> None:
    before = asyncio.all_tasks()
    informer = FakeInformer([cm("a"), cm("b")])
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(request: Request, attempt: int) -> None:
        await release.wait()
        finished.append(request.name)

    async with running(informer, slow, workers=2) as (ctl, rec, _, task, stop):
        await eventually(lambda: len(rec.in_flight) == 2)
        informer.create(cm("c"))
        informer.create(cm("d"))
        stop.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()  # waiting for the in-flight reconciles
        release.set()
        await asyncio.wait_for(task, 5)
    assert sorted(finished) == ["a", "b"]
    assert {r.name for r in rec.calls} == {"a", "b"}  # c and d were dropped
    assert sample("controller_runtime_active_workers", ctl) == 0
    assert informer.registrations == []  # the controller detached from the shared informer
    assert asyncio.all_tasks() - before == set()


async def test_property_8_cancelling_start_after_the_grace_period_cancels_reconciles_and_leaks_no_tasks() -> None:
    before = asyncio.all_tasks()
    informer = FakeInformer([cm("a")])
    cancelled = asyncio.Event()

    async def stuck(request: Request, attempt: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with running(informer, stuck) as (_, rec, _, task, stop):
        await eventually(lambda: len(rec.in_flight) == 1)
        stop.set()
        task.cancel()  # what the manager does when the graceful shutdown timeout passes
        with pytest.raises(asyncio.CancelledError):
            await task
    assert cancelled.is_set()
    assert asyncio.all_tasks() - before == set()


async def test_property_9_no_reconcile_runs_before_the_informer_and_handlers_have_synced() -> None:
    informer = FakeInformer([cm("a")], synced=False)
    async with running(informer) as (ctl, rec, clock, task, _):
        informer.create(cm("b"))
        for _ in range(50):
            await clock.advance_and_settle(1)
        assert rec.calls == []
        assert len(ctl.queue) == 2  # events were queued, not lost
        informer.mark_synced()
        await clock.advance_and_settle(0.1)
        await eventually(lambda: len(rec.calls) == 2)
        assert not task.done()


async def test_property_9_a_sync_timeout_fails_start() -> None:
    informer = FakeInformer([cm("a")], synced=False)
    async with running(informer, cache_sync_timeout=30) as (_ctl, rec, clock, task, _):
        await eventually(lambda: clock.sleepers == 1)  # start() is polling for sync
        await clock.advance_and_settle(29.9)
        assert not task.done()
        await eventually(lambda: clock.sleepers == 1)  # the sync poll is armed again
        await clock.advance_and_settle(0.2)
        with pytest.raises(CacheSyncTimeoutError, match="cache_sync_timeout=30s"):
            await asyncio.wait_for(task, 5)
        assert rec.calls == []


async def test_property_10_a_raising_reconciler_is_contained_counted_and_requeued_while_other_keys_flow() -> None:
    informer = FakeInformer([cm("bad"), cm("good")])

    async def buggy(request: Request, attempt: int) -> None:
        if request.name == "bad":
            raise KeyError("spec")  # a bug, Python's panic

    async with running(informer, buggy) as (ctl, rec, clock, task, _):
        await eventually(lambda: rec.count(req("bad")) == 1 and rec.count(req("good")) == 1)
        await idle(ctl)
        assert sample("controller_runtime_reconcile_panics_total", ctl) == 1
        assert sample("controller_runtime_reconcile_errors_total", ctl) == 1
        assert sample("controller_runtime_reconcile_total", ctl, result="success") == 1
        await clock.advance_and_settle(0.005)
        await eventually(lambda: rec.count(req("bad")) == 2)
        informer.create(cm("other"))
        await eventually(lambda: rec.count(req("other")) == 1)
        assert sample("controller_runtime_reconcile_panics_total", ctl) == 2
        assert not task.done()
