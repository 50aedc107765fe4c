"""Rate limiters that decide how long a failing key waits before its next try (client-go ``util/workqueue``).

A :class:`RateLimiter` answers ``when(item)`` with a delay in seconds, remembering per-item failures until
``forget(item)``. controller-runtime's default for every controller is :func:`default_controller_rate_limiter`:
the maximum of a per-item exponential backoff (5 ms doubling to 1,000 s) and an overall token bucket (10 qps with a
burst of 100), so one broken object backs off alone while a storm of failures is throttled as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Protocol

from kreconcile.clock import Clock, RealClock


class RateLimiter(Protocol):
    """Per-item retry delays."""

    def when(self, item: Hashable) -> float:
        """Record one more failure of ``item`` and return how many seconds to wait before retrying it."""
        ...

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item`` (it succeeded): its next failure starts from the base delay again."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures of ``item`` have been recorded since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter:
    """``base_delay * 2**failures``, capped at ``max_delay`` (seconds), counted per item.

    Defaults are client-go's controller defaults: 5 ms base, 1,000 s cap, so the delays run 5 ms, 10 ms, 20 ms, ...
    and reach the cap after 18 failures.

    Raises:
        ValueError: ``base_delay`` <= 0 or ``max_delay`` < ``base_delay``.
    """

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if not base_delay > 0:
            raise ValueError(f"base_delay must be > 0 seconds, got {base_delay!r}")
        if not max_delay >= base_delay:
            raise ValueError(f"max_delay ({max_delay!r}) must be >= base_delay ({base_delay!r})")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        """Count a failure of ``item``; return ``base_delay * 2**(earlier failures)``, capped at ``max_delay``."""
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        # guard against float overflow for huge exponents (client-go does the same check)
        if exp > 1023:
            return self.max_delay
        backoff = self.base_delay * math.pow(2, exp)
        return min(backoff, self.max_delay)

    def forget(self, item: Hashable) -> None:
        """Reset ``item``'s failure count."""
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        """Failures of ``item`` since it was last forgotten."""
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket shared by all items: ``qps`` tokens per second, at most ``burst`` stored.

    Each ``when`` takes one token (reserving it in the future when the bucket is empty) and returns the wait until
    that token exists, like ``golang.org/x/time/rate``'s ``Reserve().Delay()``. Defaults are client-go's: 10 qps,
    burst 100. It does not track items: ``forget`` is a no-op and ``num_requeues`` is 0.

    Raises:
        ValueError: ``qps`` <= 0 or ``burst`` < 1.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if not qps > 0:
            raise ValueError(f"qps must be > 0, got {qps!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.qps = qps
        self.burst = burst
        self._clock: Clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: Hashable) -> float:
        """Take one token; return seconds until it exists (0 while the burst lasts)."""
        now = self._clock.now()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        """No-op: the bucket is shared, not per item."""
        return None

    def num_requeues(self, item: Hashable) -> int:
        """Always 0: the bucket does not track items."""
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters; every limiter records every failure.

    Raises:
        ValueError: no limiters were given.
    """

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one rate limiter")
        self.limiters: tuple[RateLimiter, ...] = limiters

    def when(self, item: Hashable) -> float:
        """Record the failure in every limiter; return the longest delay."""
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        """Forget ``item`` in every limiter."""
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        """The largest count any limiter holds for ``item``."""
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> MaxOfRateLimiter:
    """client-go's ``DefaultControllerRateLimiter``: max of per-item 5 ms → 1,000 s and a 10 qps / 100 burst bucket."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100, clock))
