"""EventRecorder: events.k8s.io/v1 shape, series aggregation, non-blocking writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kreconcile.clock import FakeClock
from kreconcile.errors import NotFound, ServerError
from kreconcile.events import EventRecorder

WS = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
      "metadata": {"name": "ws1", "namespace": "team", "uid": "u-1", "resourceVersion": "7"}}


class Writer:
    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_next = False

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        if self.fail_next:
            self.fail_next = False
            raise ServerError("boom")
        self.events[obj["metadata"]["name"]] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    async def patch(self, obj: dict[str, Any], patch: dict[str, Any], patch_type: str = "merge") -> dict[str, Any]:
        self.calls.append("patch")
        name = obj["metadata"]["name"]
        if name not in self.events:
            raise NotFound("expired")
        self.events[name].update(copy.deepcopy(patch))
        return copy.deepcopy(self.events[name])


async def test_event_has_the_events_v1_shape() -> None:
    w, clock = Writer(), FakeClock()
    rec = EventRecorder(w, "kaito.sh/workspace-controller", "pod-1", clock=clock)
    nodeclaim = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "nc1", "uid": "u-2"}}
    rec.event(WS, "Warning", "NodeClaimQuotaExceeded", "quota of Standard_NC24 exceeded", "Provision",
              related=nodeclaim)
    await rec.flush()
    (ev,) = w.events.values()
    assert ev["related"] == {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "name": "nc1", "uid": "u-2"}
    assert ev["apiVersion"] == "events.k8s.io/v1" and ev["metadata"]["namespace"] == "team"
    assert ev["metadata"]["name"].startswith("ws1.")
    assert ev["regarding"] == {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "name": "ws1",
                               "namespace": "team", "uid": "u-1", "resourceVersion": "7"}
    assert (ev["type"], ev["reason"], ev["action"], ev["note"]) == (
        "Warning", "NodeClaimQuotaExceeded", "Provision", "quota of Standard_NC24 exceeded")
    assert (ev["reportingController"], ev["reportingInstance"]) == ("kaito.sh/workspace-controller", "pod-1")
    assert ev["eventTime"] == "2026-01-01T00:00:00.000000Z"
    await rec.aclose()


async def test_repeats_bump_series_count_instead_of_new_events() -> None:
    w, clock = Writer(), FakeClock()
    rec = EventRecorder(w, "ctrl", "i", clock=clock)
    for _ in range(3):
        rec.event(WS, "Normal", "Scaled", "scaled to 2", "Scale")
        clock.advance(10)
    rec.event(WS, "Normal", "Scaled", "scaled to 3", "Scale")  # different note: a new event
    await rec.flush()
    assert w.calls == ["create", "patch", "patch", "create"]
    first = next(e for e in w.events.values() if e["note"] == "scaled to 2")
    assert first["series"]["count"] == 3
    assert first["series"]["lastObservedTime"] == "2026-01-01T00:00:20.000000Z"
    clock.advance(400)  # past the 6-minute series window
    rec.event(WS, "Normal", "Scaled", "scaled to 2", "Scale")
    await rec.flush()
    assert w.calls[-1] == "create"
    await rec.aclose()


async def test_write_failures_are_logged_not_raised_and_validation_is_eager() -> None:
    w = Writer()
    rec = EventRecorder(w, "ctrl", "i", clock=FakeClock())
    w.fail_next = True
    rec.event(WS, "Normal", "A", "n", "X")
    rec.event(WS, "Normal", "B", "n", "X")
    await rec.flush()
    assert [e["reason"] for e in w.events.values()] == ["B"]
    with pytest.raises(ValueError, match="Normal"):
        rec.event(WS, "Error", "A", "n", "X")
    with pytest.raises(ValueError, match=r"metadata\.name"):
        rec.event({"apiVersion": "v1", "kind": "Pod", "metadata": {}}, "Normal", "A", "n", "X")
    await rec.aclose()
