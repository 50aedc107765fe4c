"""Rate limiters: client-go's delays and defaults."""

from __future__ import annotations

import pytest

from kreconcile.clock import FakeClock
from kreconcile.ratelimiter import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


def test_exponential_doubles_from_5ms_per_item_caps_at_1000s_and_forget_resets() -> None:
    rl = ItemExponentialFailureRateLimiter()
    assert [rl.when("a") for _ in range(4)] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert rl.when("b") == pytest.approx(0.005)  # per item
    assert rl.num_requeues("a") == 4
    assert max(rl.when("a") for _ in range(2000)) == 1000.0  # capped, no overflow after huge counts
    rl.forget("a")
    assert rl.num_requeues("a") == 0 and rl.when("a") == pytest.approx(0.005)


def test_bucket_allows_a_burst_then_spaces_requests_at_qps() -> None:
    clock = FakeClock()
    rl = BucketRateLimiter(qps=10, burst=100, clock=clock)
    assert all(rl.when(i) == 0 for i in range(100))
    assert [rl.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    clock.advance(10)  # 100 tokens refilled, 3 owed: 97 free
    assert sum(1 for i in range(97) if rl.when(i) == 0) == 97
    assert rl.when("x") == pytest.approx(0.1)


def test_max_of_takes_the_longest_delay_and_forgets_everywhere() -> None:
    clock = FakeClock()
    rl = MaxOfRateLimiter(ItemExponentialFailureRateLimiter(1.0, 60.0), BucketRateLimiter(1, 1, clock))
    assert rl.when("a") == 1.0
    assert rl.when("b") == pytest.approx(1.0)  # bucket now owes one token
    assert rl.when("a") == 2.0
    rl.forget("a")
    assert rl.num_requeues("a") == 0


def test_default_controller_rate_limiter_is_5ms_exponential_and_10qps_100_burst() -> None:
    rl = default_controller_rate_limiter(FakeClock())
    exp, bucket = rl.limiters
    assert isinstance(exp, ItemExponentialFailureRateLimiter) and (exp.base_delay, exp.max_delay) == (0.005, 1000.0)
    assert isinstance(bucket, BucketRateLimiter) and (bucket.qps, bucket.burst) == (10.0, 100)


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        ItemExponentialFailureRateLimiter(0)
    with pytest.raises(ValueError, match="max_delay"):
        ItemExponentialFailureRateLimiter(1, 0.5)
    with pytest.raises(ValueError, match="qps"):
        BucketRateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        BucketRateLimiter(1, 0)
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter()
