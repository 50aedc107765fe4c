"""metav1.Condition helpers: lastTransitionTime only moves when status flips."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kreconcile.clock import FakeClock
from kreconcile.conditions import (
    format_time,
    get_condition,
    is_current,
    is_false,
    is_true,
    remove_condition,
    set_condition,
)


def test_last_transition_time_changes_only_when_status_flips() -> None:
    clock = FakeClock()
    conds: list[dict[str, Any]] = []
    assert set_condition(conds, "Ready", "False", "NodeClaimPending", "waiting for 2 nodes", 1, clock.wall())
    assert conds == [{"type": "Ready", "status": "False", "observedGeneration": 1,
                      "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "NodeClaimPending",
                      "message": "waiting for 2 nodes"}]
    clock.advance(61)
    # same status, new reason/message/generation: updated, but the transition time stays
    assert set_condition(conds, "Ready", "False", "NodeNotReady", "1 of 2 nodes ready", 2, clock.wall())
    assert conds[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert (conds[0]["reason"], conds[0]["message"], conds[0]["observedGeneration"]) == (
        "NodeNotReady", "1 of 2 nodes ready", 2)
    clock.advance(60)
    assert set_condition(conds, "Ready", "True", "AllNodesReady", "", 2, clock.wall())
    assert conds[0]["lastTransitionTime"] == "2026-01-01T00:02:01Z"
    clock.advance(60)
    assert not set_condition(conds, "Ready", "True", "AllNodesReady", "", 2, clock.wall())  # nothing changed
    assert conds[0]["lastTransitionTime"] == "2026-01-01T00:02:01Z"


def test_queries_and_removal() -> None:
    conds: list[dict[str, Any]] = []
    set_condition(conds, "A", "True", "Ok", now=0)
    set_condition(conds, "B", "False", "Bad", observed_generation=3, now=0)
    assert is_true(conds, "A") and not is_true(conds, "B") and not is_true(conds, "C")
    assert is_false(conds, "B") and not is_false(conds, "C")
    assert is_current(conds, "B", 3) and not is_current(conds, "B", 4)
    assert "observedGeneration" not in get_condition(conds, "A")  # type: ignore[operator]
    assert remove_condition(conds, "A") and not remove_condition(conds, "A")
    assert [c["type"] for c in conds] == ["B"]


def test_times_are_rfc3339_utc_with_second_precision() -> None:
    assert format_time(1_767_225_600.987) == "2026-01-01T00:00:00Z"
    assert format_time(datetime(2026, 3, 1, 12, 30, 5, 999, tzinfo=UTC)) == "2026-03-01T12:30:05Z"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"type": "Ready", "status": "true", "reason": "Ok"}, "status"),
        ({"type": "Ready", "status": "True", "reason": "not camel"}, "reason"),
        ({"type": "Ready", "status": "True", "reason": ""}, "reason"),
        ({"type": "bad type!", "status": "True", "reason": "Ok"}, "condition type"),
        ({"type": "Ready", "status": "True", "reason": "Ok", "observed_generation": -1}, "observed_generation"),
    ],
)
def test_invalid_conditions_are_refused_with_the_field_named(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        set_condition([], **kwargs)
