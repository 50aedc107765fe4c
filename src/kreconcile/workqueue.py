"""The controller work queue: de-duplicating, delaying, rate-limited and prioritised (client-go ``util/workqueue``
plus controller-runtime's priority queue), for asyncio.

Invariants (client-go's ``queue``/``dirty``/``processing`` design):

* An item is *pending* (client-go: dirty) at most once: adding an item that is already pending only merges the
  request — the higher priority and the earlier ready time win — so ``len`` counts it once.
* An item handed out by :meth:`WorkQueue.get` is *processing* until :meth:`WorkQueue.done`; no other getter receives
  it meanwhile. Adding it while it is processing marks it pending again; it becomes available only after ``done``,
  which is why a key is never worked on by two workers at once, and why events during a reconcile cause exactly one
  more reconcile.
* ``add_after(item, s)``: the item becomes ready ``s`` seconds later; when it is already pending the earliest ready
  time wins, and a plain ``add`` makes it ready at once.
* Ready items are handed out highest priority first, FIFO within a priority. Initial-list and resync events are
  added at :data:`PRIORITY_LOW` so they never starve real changes (controller-runtime's ``LowPriority``).

Time comes from an injectable :class:`~kreconcile.clock.Clock`. Metrics (``workqueue_*`` with labels ``name`` and
``controller``) are recorded when the queue has a name. Everything runs on one event loop; none of the methods is
thread-safe.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from kreconcile import metrics
from kreconcile.clock import Clock, RealClock
from kreconcile.ratelimiter import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)

PRIORITY_NORMAL = 0
"""Priority of ordinary adds (events that changed something, retries, requeues)."""
PRIORITY_LOW = -100
"""Priority of initial-list and resync adds (controller-runtime's ``handler.LowPriority``)."""

_WAITING, _READY, _BLOCKED = 0, 1, 2


class ShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down (and, when draining, empty)."""


@dataclass(slots=True)
class _Entry:
    priority: int
    ready_at: float
    state: int
    ready_since: float
    version: int = 0
    counted: bool = False


class WorkQueue(Generic[T]):
    """A de-duplicating, delaying, rate-limited priority work queue.

    Args:
        name: the queue's name, used as the ``name`` label of the ``workqueue_*`` metrics; "" records no metrics.
        controller: the ``controller`` label of the metrics (defaults to ``name``, as controller-runtime does).
        rate_limiter: delays for :meth:`add_rate_limited` (default: :func:`default_controller_rate_limiter`).
        clock: time source for delays and durations (default :class:`RealClock`).
    """

    def __init__(
        self,
        name: str = "",
        *,
        controller: str | None = None,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter(self._clock)
        self._pending: dict[T, _Entry] = {}
        self._processing: dict[T, float] = {}
        self._ready: list[tuple[int, int, int, T]] = []  # (-priority, seq, version, item)
        self._waiting: list[tuple[float, int, int, T]] = []  # (ready_at, seq, version, item)
        self._seq = itertools.count()
        self._ready_count = 0
        self._waiting_count = 0
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._draining = False
        self._drained: asyncio.Event | None = None
        self._metrics = bool(name)
        if self._metrics:
            labels = {"name": name, "controller": controller if controller is not None else name}
            metrics.init_workqueue_metrics(labels["name"], labels["controller"])
            self._m_depth = metrics.workqueue_depth.labels(**labels)
            self._m_adds = metrics.workqueue_adds_total.labels(**labels)
            self._m_queue_duration = metrics.workqueue_queue_duration_seconds.labels(**labels)
            self._m_work_duration = metrics.workqueue_work_duration_seconds.labels(**labels)
            self._m_retries = metrics.workqueue_retries_total.labels(**labels)
            self._m_depth.set(0)
            metrics.workqueue_unfinished_work_seconds.labels(**labels).set_function(self._unfinished_work_seconds)
            metrics.workqueue_longest_running_processor_seconds.labels(**labels).set_function(
                self._longest_running_processor_seconds
            )

    # ---- adding -------------------------------------------------------------------------------------------------

    def add(self, item: T, *, priority: int = PRIORITY_NORMAL) -> None:
        """Make ``item`` ready now (merging with a pending entry; no-op after shutdown)."""
        self._add(item, 0.0, priority)

    def add_after(self, item: T, seconds: float, *, priority: int = PRIORITY_NORMAL) -> None:
        """Make ``item`` ready in ``seconds`` (<= 0 means now). If it is already pending, the earlier time wins.

        Raises:
            ValueError: ``seconds`` is NaN.
        """
        if math.isnan(seconds):
            raise ValueError("add_after: seconds must be a number, got NaN")
        self._add(item, max(0.0, seconds), priority)

    def add_rate_limited(self, item: T, *, priority: int = PRIORITY_NORMAL) -> None:
        """Add ``item`` after the delay its rate limiter gives it (a retry: counted in ``workqueue_retries_total``)."""
        if self._shutting_down:
            return
        if self._metrics:
            self._m_retries.inc()
        self._add(item, self.rate_limiter.when(item), priority)

    def forget(self, item: T) -> None:
        """Reset ``item``'s failure count in the rate limiter (call after a success). Does not remove it."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        """How many rate-limited retries ``item`` has had since it was last forgotten."""
        return self.rate_limiter.num_requeues(item)

    def _add(self, item: T, delay: float, priority: int) -> None:
        if self._shutting_down:
            return
        now = self._clock.now()
        ready_at = now + delay
        entry = self._pending.get(item)
        if entry is None:
            entry = _Entry(priority=priority, ready_at=ready_at, state=_BLOCKED, ready_since=now)
            if delay <= 0:
                self._count_add(entry)
            self._pending[item] = entry
            if item not in self._processing:
                self._release(item, entry, now)
            return
        raised = priority > entry.priority
        earlier = ready_at < entry.ready_at
        if raised:
            entry.priority = priority
        if earlier:
            entry.ready_at = ready_at
        if entry.state == _WAITING and (raised or earlier):
            self._release(item, entry, now)
        elif entry.state == _READY and raised:
            self._push_ready(item, entry)

    def _release(self, item: T, entry: _Entry, now: float) -> None:
        """Move a pending, not-processing entry to ready (if due) or waiting."""
        if entry.state == _WAITING:
            self._waiting_count -= 1
        if entry.ready_at <= now:
            self._count_add(entry)
            entry.state = _READY
            entry.ready_since = now
            self._ready_count += 1
            if self._metrics:
                self._m_depth.inc()
            self._push_ready(item, entry)
            self._wake_one()
        elif self._draining:
            # draining hands out only what is ready; delayed work is dropped (client-go stops its delaying queue)
            del self._pending[item]
            self._check_drained()
        else:
            entry.state = _WAITING
            entry.version += 1
            self._waiting_count += 1
            earliest = self._waiting[0][0] if self._waiting else math.inf
            heapq.heappush(self._waiting, (entry.ready_at, next(self._seq), entry.version, item))
            if len(self._waiting) > 64 and len(self._waiting) > 4 * self._waiting_count:
                self._compact_waiting()
            if entry.ready_at < earliest:
                self._wake_all()  # sleeping getters must re-arm their timers for the new earliest deadline

    def _compact_waiting(self) -> None:
        """Drop superseded delay entries (left behind when an item was made ready or given an earlier time)."""
        live = []
        for ready_at, seq, version, item in self._waiting:
            entry = self._pending.get(item)
            if entry is not None and entry.version == version and entry.state == _WAITING:
                live.append((ready_at, seq, version, item))
        heapq.heapify(live)
        self._waiting = live

    def _count_add(self, entry: _Entry) -> None:
        """``workqueue_adds_total`` counts an item once per pending period, when it is added without delay or when
        its delay expires (client-go counts delayed items when the delaying queue hands them over)."""
        if not entry.counted:
            entry.counted = True
            if self._metrics:
                self._m_adds.inc()

    def _push_ready(self, item: T, entry: _Entry) -> None:
        entry.version += 1
        heapq.heappush(self._ready, (-entry.priority, next(self._seq), entry.version, item))

    def _promote_due(self) -> None:
        now = self._clock.now()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, version, item = heapq.heappop(self._waiting)
            entry = self._pending.get(item)
            if entry is not None and entry.version == version and entry.state == _WAITING:
                self._release(item, entry, now)

    # ---- taking -------------------------------------------------------------------------------------------------

    def get_nowait(self) -> T:
        """Take the highest-priority ready item and mark it processing.

        Raises:
            ShutDown: the queue is shut down (and, when draining, has nothing left to hand out).
            asyncio.QueueEmpty: nothing is ready yet.
        """
        return self.get_with_priority_nowait()[0]

    def get_with_priority_nowait(self) -> tuple[T, int]:
        """Like :meth:`get_nowait`, also returning the item's priority (to requeue it at the same priority)."""
        if self._shutting_down and not self._draining:
            raise ShutDown
        self._promote_due()
        while self._ready:
            _, _, version, item = heapq.heappop(self._ready)
            entry = self._pending.get(item)
            if entry is None or entry.version != version or entry.state != _READY:
                continue
            del self._pending[item]
            now = self._clock.now()
            self._ready_count -= 1
            self._processing[item] = now
            if self._metrics:
                self._m_depth.dec()
                self._m_queue_duration.observe(max(0.0, now - entry.ready_since))
            return item, entry.priority
        if self._draining and not self._pending:
            raise ShutDown
        raise asyncio.QueueEmpty

    async def get(self) -> T:
        """Wait for a ready item, mark it processing and return it. Call :meth:`done` when finished with it.

        Raises:
            ShutDown: the queue was shut down (immediately for :meth:`shut_down`; once nothing is left to hand out
                while :meth:`shut_down_with_drain` runs).
        """
        return (await self.get_with_priority())[0]

    async def get_with_priority(self) -> tuple[T, int]:
        """Like :meth:`get`, also returning the item's priority."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return self.get_with_priority_nowait()
            except asyncio.QueueEmpty:
                pass
            fut: asyncio.Future[None] = loop.create_future()
            self._getters.append(fut)
            deadline = self._waiting[0][0] if self._waiting else None
            woken = False
            try:
                if deadline is None:
                    await fut
                else:
                    sleeper = asyncio.ensure_future(self._sleep_until(deadline))
                    try:
                        await asyncio.wait((fut, sleeper), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        sleeper.cancel()
                woken = True
            finally:
                if not fut.done():
                    fut.cancel()
                    try:
                        self._getters.remove(fut)
                    except ValueError:
                        pass
                elif not woken and not fut.cancelled() and self._ready_count:
                    self._wake_one()  # we were picked but got cancelled: pass the wake-up on

    async def _sleep_until(self, deadline: float) -> None:
        # the remaining time is computed when the task first runs, not when it is created, so a clock that moved
        # in between (a FakeClock advanced by a test) cannot push the wake-up past the deadline
        await self._clock.sleep(deadline - self._clock.now())

    def done(self, item: T) -> None:
        """Finish processing ``item``. If it was added meanwhile it becomes ready (or waits) again. Calling ``done``
        for an item that is not processing does nothing (client-go behaviour)."""
        started = self._processing.pop(item, None)
        if started is None:
            return
        now = self._clock.now()
        if self._metrics:
            self._m_work_duration.observe(max(0.0, now - started))
        entry = self._pending.get(item)
        if entry is not None:
            if self._shutting_down and not self._draining:
                del self._pending[item]
            else:
                self._release(item, entry, now)
        self._check_drained()

    # ---- shutdown -----------------------------------------------------------------------------------------------

    def shut_down(self) -> None:
        """Stop at once: drop every pending item, ignore later adds, make every ``get`` raise :class:`ShutDown`.

        Items being processed may still be passed to :meth:`done`. (client-go still hands out queued items after
        ``ShutDown``; controllers stop calling ``Get`` anyway, so here they are dropped explicitly.)
        """
        self._shutting_down = True
        self._draining = False
        self._pending.clear()
        self._ready.clear()
        self._waiting.clear()
        self._ready_count = 0
        self._waiting_count = 0
        if self._metrics:
            self._m_depth.set(0)
        self._wake_all()
        self._check_drained()

    async def shut_down_with_drain(self) -> None:
        """Ignore later adds, keep handing out what is ready (delayed items are dropped), and return once nothing
        is queued or processing; then every ``get`` raises :class:`ShutDown`."""
        self._shutting_down = True
        self._draining = True
        if self._drained is None:
            self._drained = asyncio.Event()
        for item, entry in list(self._pending.items()):
            if entry.state == _WAITING:
                del self._pending[item]
        self._waiting.clear()
        self._waiting_count = 0
        self._wake_all()
        self._check_drained()
        await self._drained.wait()

    def _check_drained(self) -> None:
        if self._drained is not None and not self._pending and not self._processing:
            self._drained.set()
            self._wake_all()

    @property
    def shutting_down(self) -> bool:
        """True once :meth:`shut_down` or :meth:`shut_down_with_drain` was called."""
        return self._shutting_down

    # ---- inspection ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of items ready to be handed out (de-duplicated; delayed and processing items not counted)."""
        self._promote_due()
        return self._ready_count

    def is_pending(self, item: T) -> bool:
        """True if ``item`` is queued, waiting for its delay, or re-added while processing."""
        return item in self._pending

    def is_processing(self, item: T) -> bool:
        """True between ``get`` returning ``item`` and ``done(item)``."""
        return item in self._processing

    @property
    def processing_count(self) -> int:
        """Number of items handed out and not yet done."""
        return len(self._processing)

    def next_ready_at(self) -> float | None:
        """Clock time at which the earliest delayed item becomes ready, or None if none is delayed."""
        for ready_at, _, version, item in sorted(self._waiting):
            entry = self._pending.get(item)
            if entry is not None and entry.version == version and entry.state == _WAITING:
                return ready_at
        return None

    def _unfinished_work_seconds(self) -> float:
        now = self._clock.now()
        return sum(max(0.0, now - t) for t in self._processing.values())

    def _longest_running_processor_seconds(self) -> float:
        if not self._processing:
            return 0.0
        return max(0.0, self._clock.now() - min(self._processing.values()))

    # ---- wake-ups -----------------------------------------------------------------------------------------------

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
