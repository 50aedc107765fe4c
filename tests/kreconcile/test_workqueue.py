"""WorkQueue behaviour: de-duplication, processing exclusion, delays, priorities, shutdown, metrics."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kreconcile import metrics
from kreconcile.clock import FakeClock
from kreconcile.ratelimiter import ItemExponentialFailureRateLimiter
from kreconcile.workqueue import PRIORITY_LOW, ShutDown, WorkQueue


def _queue(clock: FakeClock | None = None, name: str = "") -> WorkQueue[str]:
    return WorkQueue(name, clock=clock or FakeClock(), rate_limiter=ItemExponentialFailureRateLimiter())


def test_adding_a_queued_item_again_does_not_grow_the_queue() -> None:
    q = _queue()
    for _ in range(3):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert [q.get_nowait(), q.get_nowait()] == ["a", "b"]
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


def test_item_added_while_processing_is_handed_out_again_only_after_done() -> None:
    q = _queue()
    q.add("a")
    assert q.get_nowait() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    q.done("a")
    assert len(q) == 1
    assert q.get_nowait() == "a"
    q.done("a")
    assert len(q) == 0 and not q.is_pending("a")


def test_add_after_keeps_the_earliest_ready_time_and_add_makes_it_ready_at_once() -> None:
    clock = FakeClock()
    q = _queue(clock)
    q.add_after("a", 10)
    q.add_after("a", 5)
    q.add_after("a", 20)
    assert q.next_ready_at() == 5
    clock.advance(4.999)
    assert len(q) == 0
    clock.advance(0.001)
    assert len(q) == 1
    assert q.get_nowait() == "a"
    q.done("a")
    q.add_after("b", 100)
    q.add("b")
    assert q.get_nowait() == "b"


def test_low_priority_items_wait_behind_normal_ones_and_are_raised_by_a_normal_add() -> None:
    q = _queue()
    for i in range(5):
        q.add(f"resync-{i}", priority=PRIORITY_LOW)
    q.add("change")
    q.add("resync-3")  # a real event for a key queued at low priority raises it
    got = [q.get_nowait() for _ in range(6)]
    assert got[:2] == ["change", "resync-3"]
    assert got[2:] == ["resync-0", "resync-1", "resync-2", "resync-4"]


async def test_get_waits_for_an_add_and_for_a_delay_on_the_injected_clock() -> None:
    clock = FakeClock()
    q = _queue(clock)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add_after("x", 3)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not getter.done()
    await clock.advance_and_settle(3)
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_shut_down_wakes_getters_and_drops_queued_items() -> None:
    q = _queue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")
    assert await asyncio.wait_for(getter, 1) == "a"
    q.add("b")
    q.add_after("c", 5)
    waiting = asyncio.create_task(q.get())
    q.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 1)
    assert len(q) == 0
    q.add("d")
    assert len(q) == 0
    q.done("a")
    with pytest.raises(ShutDown):
        q.get_nowait()


async def test_shut_down_with_drain_hands_out_ready_items_and_waits_for_in_flight_work() -> None:
    q = _queue()
    q.add("a")
    q.add("b")
    q.add_after("later", 100)
    assert q.get_nowait() == "a"
    drain = asyncio.create_task(q.shut_down_with_drain())
    await asyncio.sleep(0)
    q.add("ignored")
    assert q.get_nowait() == "b"
    q.done("b")
    await asyncio.sleep(0)
    assert not drain.done()  # "a" is still processing
    q.done("a")
    await asyncio.wait_for(drain, 1)
    with pytest.raises(ShutDown):
        q.get_nowait()


async def test_cancelled_getter_does_not_swallow_an_item() -> None:
    q = _queue()
    g1 = asyncio.create_task(q.get())
    g2 = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")  # wakes g1
    g1.cancel()
    await asyncio.sleep(0)
    assert await asyncio.wait_for(g2, 1) == "a"


def test_rate_limited_adds_back_off_per_item_and_forget_resets() -> None:
    clock = FakeClock()
    q = _queue(clock)
    delays = []
    for _ in range(4):
        q.add_rate_limited("a")
        delays.append(q.next_ready_at() - clock.now())  # type: ignore[operator]
        clock.advance(delays[-1])
        assert q.get_nowait() == "a"
        q.done("a")
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert q.num_requeues("a") == 4
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_metrics_count_adds_depth_retries_and_durations() -> None:
    clock = FakeClock()
    name = f"q-{uuid.uuid4().hex[:8]}"
    q = WorkQueue[str](name, controller="ctl", clock=clock)
    labels = {"name": name, "controller": "ctl"}

    def sample(metric: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(metric, labels)

    assert sample("workqueue_depth") == 0
    assert sample("workqueue_adds_total") == 0
    assert sample("workqueue_retries_total") == 0
    q.add("a")
    q.add("a")
    q.add("b")
    assert sample("workqueue_adds_total") == 2
    assert sample("workqueue_depth") == 2
    clock.advance(0.5)
    assert q.get_nowait() == "a"
    assert sample("workqueue_depth") == 1
    assert sample("workqueue_queue_duration_seconds_sum") == pytest.approx(0.5)
    clock.advance(2)
    assert sample("workqueue_unfinished_work_seconds") == pytest.approx(2)
    assert sample("workqueue_longest_running_processor_seconds") == pytest.approx(2)
    q.done("a")
    assert sample("workqueue_work_duration_seconds_sum") == pytest.approx(2)
    assert sample("workqueue_work_duration_seconds_count") == 1
    assert sample("workqueue_unfinished_work_seconds") == 0
    q.add_rate_limited("c")
    assert sample("workqueue_retries_total") == 1
    assert sample("workqueue_adds_total") == 2  # a delayed add counts when its delay expires
    clock.advance(0.005)
    assert len(q) == 2
    assert sample("workqueue_adds_total") == 3


def test_superseded_delays_do_not_accumulate() -> None:
    clock = FakeClock()
    q = _queue(clock)
    for round_ in range(50):
        for i in range(20):
            q.add_after(f"k{i}", 600 - round_)  # every round gives each key an earlier time
    assert len(q._waiting) <= 4 * 20 + 64  # bounded by the live entries, not by the number of adds
    clock.advance(600 - 49)
    assert len(q) == 20


async def test_a_delay_that_expires_before_the_getter_arms_its_timer_still_wakes_it() -> None:
    clock = FakeClock()
    q = _queue(clock)
    q.add_after("a", 0.5)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)  # the getter found nothing ready and scheduled its timer task
    clock.advance(100)  # time moves before that task has run
    assert await asyncio.wait_for(getter, 1) == "a"
