"""Hypothesis state machine: the WorkQueue against a simple model of its invariants.

The model keeps, per item, whether it is pending (with its earliest ready time and highest priority) and whether
it is processing. Every step checks: de-duplication (``len`` counts each ready item once), dirty/processing (an
item added while processing is not handed out until ``done``), no item handed out twice at once, priority order,
delays never fire early, and shutdown drops everything and refuses further adds.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kreconcile.clock import FakeClock
from kreconcile.ratelimiter import ItemExponentialFailureRateLimiter
from kreconcile.workqueue import PRIORITY_LOW, PRIORITY_NORMAL, ShutDown, WorkQueue

ITEMS = st.sampled_from(["a", "b", "c", "d"])
PRIORITIES = st.sampled_from([PRIORITY_LOW, PRIORITY_NORMAL, 10])
DELAYS = st.sampled_from([0.0, 0.5, 1.0, 2.5, 10.0])


class WorkQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.q: WorkQueue[str] = WorkQueue(clock=self.clock, rate_limiter=ItemExponentialFailureRateLimiter())
        self.pending: dict[str, tuple[float, int]] = {}  # item -> (ready_at, priority)
        self.processing: set[str] = set()
        self.shut = False

    def _model_add(self, item: str, delay: float, priority: int) -> None:
        if self.shut:
            return
        ready_at = self.clock.now() + delay
        if item in self.pending:
            old_at, old_prio = self.pending[item]
            self.pending[item] = (min(old_at, ready_at), max(old_prio, priority))
        else:
            self.pending[item] = (ready_at, priority)

    def _eligible(self) -> dict[str, int]:
        now = self.clock.now()
        return {i: p for i, (at, p) in self.pending.items() if at <= now and i not in self.processing}

    @rule(item=ITEMS, priority=PRIORITIES)
    def add(self, item: str, priority: int) -> None:
        self.q.add(item, priority=priority)
        self._model_add(item, 0.0, priority)

    @rule(item=ITEMS, delay=DELAYS, priority=PRIORITIES)
    def add_after(self, item: str, delay: float, priority: int) -> None:
        self.q.add_after(item, delay, priority=priority)
        self._model_add(item, delay, priority)

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def get(self) -> None:
        eligible = self._eligible()
        try:
            item, priority = self.q.get_with_priority_nowait()
        except ShutDown:
            assert self.shut
            return
        except asyncio.QueueEmpty:
            assert not eligible, f"queue empty but {eligible} are ready"
            return
        assert not self.shut
        assert item in eligible, f"handed out {item!r}, which is not ready or is processing"
        assert priority == eligible[item], "the item's priority is not the highest it was added with"
        assert priority == max(eligible.values()), "a lower-priority item was handed out first"
        del self.pending[item]
        self.processing.add(item)

    @precondition(lambda self: bool(self.processing))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(sorted(self.processing)))
        self.q.done(item)
        self.processing.discard(item)
        if self.shut:
            self.pending.pop(item, None)

    @rule(item=ITEMS)
    def done_for_an_item_not_processing_is_a_noop(self, item: str) -> None:
        if item not in self.processing:
            self.q.done(item)

    @rule()
    def shut_down(self) -> None:
        self.q.shut_down()
        self.shut = True
        self.pending.clear()

    @invariant()
    def ready_count_matches_the_model(self) -> None:
        assert len(self.q) == len(self._eligible())

    @invariant()
    def pending_and_processing_match_the_model(self) -> None:
        for item in "abcd":
            assert self.q.is_pending(item) == (item in self.pending), item
            assert self.q.is_processing(item) == (item in self.processing), item
        assert self.q.processing_count == len(self.processing)


WorkQueueMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_workqueue_matches_its_model = WorkQueueMachine.TestCase


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ITEMS, PRIORITIES),
        st.tuples(st.just("add_after"), ITEMS, DELAYS),
        st.tuples(st.just("yield"), st.integers(1, 4)),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, workers=st.integers(1, 3), hold=st.integers(0, 3))
def test_concurrent_getters_never_share_an_item_and_every_add_is_followed_by_processing(
    ops: list[tuple[object, ...]], workers: int, hold: int
) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        q: WorkQueue[str] = WorkQueue(clock=clock, rate_limiter=ItemExponentialFailureRateLimiter())
        holding: set[str] = set()
        tick = 0
        last_add: dict[str, int] = {}
        last_start: dict[str, int] = {}

        async def worker() -> None:
            nonlocal tick
            while True:
                try:
                    item = await q.get()
                except ShutDown:
                    return
                assert item not in holding, f"{item!r} handed to two getters at once"
                holding.add(item)
                tick += 1
                last_start[item] = tick
                for _ in range(hold):
                    await asyncio.sleep(0)
                holding.discard(item)
                q.done(item)

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        for op in ops:
            kind = op[0]
            if kind in ("add", "add_after"):
                item = str(op[1])
                tick += 1
                last_add[item] = tick
                if kind == "add":
                    q.add(item, priority=int(op[2]))  # type: ignore[call-overload]
                else:
                    q.add_after(item, float(op[2]))  # type: ignore[arg-type]
            elif kind == "yield":
                for _ in range(int(op[1])):  # type: ignore[call-overload]
                    await asyncio.sleep(0)
            else:
                clock.advance(float(op[1]))  # type: ignore[arg-type]
                await asyncio.sleep(0)
        clock.advance(100)  # every delay is due
        for _ in range(10_000):
            if not any(q.is_pending(i) for i in "abcd") and q.processing_count == 0:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("queue never drained")
        for item, added in last_add.items():
            assert last_start.get(item, -1) > added, f"{item!r} was added but not processed afterwards"
        q.shut_down()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())
