"""Injectable time. Everything in kreconcile that waits or timestamps takes a :class:`Clock`.

Production code uses :class:`RealClock` (``time.monotonic`` for durations, ``time.time`` for wall time,
``asyncio.sleep`` to wait). Tests use :class:`FakeClock`, whose time only moves when the test calls
:meth:`FakeClock.advance`, so no test sleeps on the wall clock to wait for logic (client-go's ``clock.FakeClock``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """A source of time. ``now()`` is monotonic seconds; ``wall()`` is seconds since the Unix epoch."""

    def now(self) -> float:
        """Monotonic seconds, for durations and deadlines."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps written to objects."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time (returns at once for ``seconds <= 0``)."""
        ...


class RealClock:
    """The process's clocks: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to; sleepers wake when :meth:`advance` passes their deadline.

    ``start`` is the initial monotonic reading; ``wall_start`` the initial epoch reading (defaults to
    2026-01-01T00:00:00Z so timestamps in tests are stable).
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_767_225_600.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """The earliest pending sleep's wake-up time, or None."""
        for deadline, _, fut in sorted(self._sleepers):
            if not fut.done():
                return deadline
        return None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("FakeClock.advance: seconds must be >= 0")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def advance_and_settle(self, seconds: float, rounds: int = 10) -> None:
        """Advance, then yield to the event loop ``rounds`` times so woken tasks run."""
        self.advance(seconds)
        for _ in range(rounds):
            await asyncio.sleep(0)
