import asyncio

import pytest

from kreconcile.clock import FakeClock


async def test_fake_clock_wakes_sleepers_only_when_their_deadline_passes() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("late", 2.0)), asyncio.create_task(sleeper("early", 1.0))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    await clock.advance_and_settle(0.999)
    assert woke == []
    await clock.advance_and_settle(0.001)
    assert woke == ["early"]
    await clock.advance_and_settle(5)
    assert woke == ["early", "late"]
    await asyncio.gather(*tasks)


def test_fake_clock_refuses_to_go_backwards() -> None:
    with pytest.raises(ValueError):
        FakeClock().advance(-1)
