"""Controller and event-handler behaviour beyond the numbered properties (see test_properties.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import structlog

from kreconcile import metrics
from kreconcile.clock import FakeClock
from kreconcile.controller import Controller
from kreconcile.gvk import GVK
from kreconcile.handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
    QueueingEventHandler,
)
from kreconcile.predicates import GenerationChanged
from kreconcile.reconcile import Request, Result
from kreconcile.testing.fakes import FakeInformer, RecordingReconciler, eventually
from kreconcile.workqueue import PRIORITY_LOW, PRIORITY_NORMAL

WORKSPACE = GVK("kaito.sh", "v1beta1", "Workspace")


def cm(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def name() -> str:
    return f"ctl-{uuid.uuid4().hex[:8]}"


class RecordingQueue:
    def __init__(self) -> None:
        self.adds: list[tuple[Request, int]] = []

    def add(self, item: Request, *, priority: int = PRIORITY_NORMAL) -> None:
        self.adds.append((item, priority))


def test_initial_list_and_resync_events_are_low_priority_and_real_changes_normal() -> None:
    q = RecordingQueue()
    h = QueueingEventHandler(EnqueueRequestForObject(), q)
    inf = FakeInformer([cm("a")])
    inf.add_event_handler(h)
    inf.create(cm("b"))
    inf.resync()
    inf.update(cm("a", x="1"))
    inf.delete("default", "b")
    a, b = Request("default", "a"), Request("default", "b")
    assert q.adds == [
        (a, PRIORITY_LOW),  # initial list
        (b, PRIORITY_NORMAL),  # created after sync
        (a, PRIORITY_LOW), (b, PRIORITY_LOW),  # resync
        (a, PRIORITY_NORMAL),  # real update
        (b, PRIORITY_NORMAL),  # delete
    ]


def test_enqueue_for_owner_follows_the_controller_reference_by_group_and_kind() -> None:
    def owned(*refs: dict[str, Any], namespace: str = "ns") -> dict[str, Any]:
        return {"metadata": {"name": "child", "namespace": namespace, "ownerReferences": list(refs)}}

    ctrl_ref = {"apiVersion": "kaito.sh/v1alpha1", "kind": "Workspace", "name": "w1", "controller": True}
    plain_ref = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "name": "w2"}
    other_kind = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "controller": True}
    assert list(EnqueueRequestForOwner(WORKSPACE).requests_for(owned(ctrl_ref, plain_ref, other_kind))) == [
        Request("ns", "w1")  # version differs from the watched owner GVK: still matched, as upstream
    ]
    assert list(EnqueueRequestForOwner(WORKSPACE, is_controller=False).requests_for(owned(ctrl_ref, plain_ref))) == [
        Request("ns", "w1"), Request("ns", "w2")
    ]
    cluster_owner = EnqueueRequestForOwner(GVK("karpenter.sh", "v1", "NodeClaim"), owner_namespaced=False)
    nc_ref = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "name": "nc", "controller": True}
    assert list(cluster_owner.requests_for(owned(nc_ref))) == [Request(None, "nc")]


def test_update_enqueues_old_and_new_mappings_and_a_failing_mapper_drops_only_that_event() -> None:
    q = RecordingQueue()

    def by_label(obj: dict[str, Any]) -> list[Request]:
        return [Request("ns", obj["metadata"]["labels"]["target"])]  # KeyError without the label

    h = QueueingEventHandler(EnqueueRequestsFromMapFunc(by_label), q)
    old = {"metadata": {"name": "x", "resourceVersion": "1", "labels": {"target": "t1"}}}
    new = {"metadata": {"name": "x", "resourceVersion": "2", "labels": {"target": "t2"}}}
    h.on_update(old, new)
    assert [r for r, _ in q.adds] == [Request("ns", "t2"), Request("ns", "t1")]
    h.on_add({"metadata": {"name": "y"}}, False)  # mapper raises: logged, nothing enqueued, no exception
    h.on_add(new, False)
    assert [r for r, _ in q.adds][-1] == Request("ns", "t2") and len(q.adds) == 3


def test_metrics_are_initialised_to_zero_when_the_controller_is_created() -> None:
    ctl = Controller(name(), RecordingReconciler(), max_concurrent_reconciles=3)
    for result in ("success", "error", "requeue", "requeue_after"):
        assert metrics.REGISTRY.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": ctl.name, "result": result}) == 0
    labels = {"controller": ctl.name}
    for metric in ("controller_runtime_reconcile_errors_total", "controller_runtime_terminal_reconcile_errors_total",
                   "controller_runtime_reconcile_panics_total", "controller_runtime_active_workers",
                   "controller_runtime_reconcile_time_seconds_count"):
        assert metrics.REGISTRY.get_sample_value(metric, labels) == 0, metric
    assert metrics.REGISTRY.get_sample_value("controller_runtime_max_concurrent_reconciles", labels) == 3
    assert metrics.REGISTRY.get_sample_value("workqueue_depth", {"name": ctl.name, "controller": ctl.name}) == 0


async def test_each_reconcile_binds_controller_key_and_a_unique_reconcile_id_into_the_log_context() -> None:
    seen: list[dict[str, Any]] = []

    async def capture(request: Request, attempt: int) -> None:
        seen.append(dict(structlog.contextvars.get_contextvars()))

    inf = FakeInformer([cm("a"), cm("b", namespace="other")])
    ctl = Controller(name(), RecordingReconciler(capture), clock=FakeClock())
    ctl.watch(inf)
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    await eventually(lambda: len(seen) == 2)
    inf.update(cm("a", v="1"))
    await eventually(lambda: len(seen) == 3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [(c["controller"], c["namespace"], c["name"]) for c in seen] == [
        (ctl.name, "default", "a"), (ctl.name, "other", "b"), (ctl.name, "default", "a")]
    ids = [c["reconcile_id"] for c in seen]
    assert len(set(ids)) == 3 and all(uuid.UUID(i) for i in ids)
    assert "reconcile_id" not in structlog.contextvars.get_contextvars()


async def test_requeue_true_retries_with_backoff_and_counts_requeue() -> None:
    clock = FakeClock()

    async def requeue_once(request: Request, attempt: int) -> Result:
        return Result(requeue=attempt == 1)

    rec = RecordingReconciler(requeue_once)
    ctl = Controller(name(), rec, clock=clock)
    ctl.watch(FakeInformer([cm("a")]))
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    await eventually(lambda: len(rec.calls) == 1 and ctl.queue.next_ready_at() is not None)
    assert ctl.queue.next_ready_at() == pytest.approx(clock.now() + 0.005)
    await clock.advance_and_settle(0.005)
    await eventually(lambda: len(rec.calls) == 2)
    stop.set()
    await asyncio.wait_for(task, 5)
    labels = {"controller": ctl.name}
    assert metrics.REGISTRY.get_sample_value("controller_runtime_reconcile_total", {**labels, "result": "requeue"}) == 1
    assert metrics.REGISTRY.get_sample_value("controller_runtime_reconcile_total", {**labels, "result": "success"}) == 1


async def test_without_recover_panic_a_bug_in_the_reconciler_fails_start() -> None:
    async def buggy(request: Request, attempt: int) -> None:
        raise AttributeError("'NoneType' object has no attribute 'spec'")

    ctl = Controller(name(), RecordingReconciler(buggy), clock=FakeClock(), recover_panic=False)
    ctl.watch(FakeInformer([cm("a")]))
    with pytest.raises(AttributeError, match="spec"):
        await asyncio.wait_for(ctl.start(asyncio.Event()), 5)
    assert metrics.REGISTRY.get_sample_value("controller_runtime_reconcile_panics_total", {"controller": ctl.name}) == 0


async def test_a_reconciler_returning_the_wrong_type_is_counted_as_a_panic() -> None:
    class Wrong:
        async def reconcile(self, request: Request) -> Any:
            return "done"

    ctl = Controller(name(), Wrong(), clock=FakeClock())
    ctl.watch(FakeInformer([cm("a")]))
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    labels = {"controller": ctl.name}
    panics = "controller_runtime_reconcile_panics_total"
    await eventually(lambda: metrics.REGISTRY.get_sample_value(panics, labels) == 1)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_resync_events_do_not_starve_real_changes() -> None:
    inf = FakeInformer([cm(f"r{i:02}") for i in range(30)])
    release = asyncio.Event()

    async def first_blocks(request: Request, attempt: int) -> None:
        if not release.is_set():
            await release.wait()

    rec = RecordingReconciler(first_blocks)
    ctl = Controller(name(), rec, clock=FakeClock())
    ctl.watch(inf)
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    await eventually(lambda: len(rec.calls) == 1)  # the worker is busy with r00; 29 initial-list keys queued
    inf.resync()  # 30 low-priority resync events
    inf.update(cm("r29", changed="yes"))  # one real change, queued last
    release.set()
    await eventually(lambda: len(rec.calls) == 31)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert rec.calls[1] == Request("default", "r29")  # handled next, ahead of every queued resync


async def test_watch_after_start_registers_at_once_and_predicates_filter_it() -> None:
    rec = RecordingReconciler()
    ctl = Controller(name(), rec, clock=FakeClock())
    ctl.watch(FakeInformer())
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    await eventually(lambda: ctl.queue.processing_count == 0 and ctl.started)
    late = FakeInformer([cm("late")])
    ctl.watch(late, predicates=[GenerationChanged()])
    await eventually(lambda: rec.calls == [Request("default", "late")])
    stored = late.get("default", "late")
    stored["metadata"]["labels"] = {"x": "y"}  # metadata-only change: filtered by GenerationChanged
    late.update(stored)
    late.delete("default", "late")  # deletes pass
    await eventually(lambda: len(rec.calls) == 2)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_start_refuses_to_run_twice_or_without_watches() -> None:
    with pytest.raises(RuntimeError, match="no watches"):
        await Controller(name(), RecordingReconciler()).start(asyncio.Event())
    ctl = Controller(name(), RecordingReconciler(), clock=FakeClock())
    ctl.watch(FakeInformer())
    stop = asyncio.Event()
    stop.set()
    await ctl.start(stop)
    with pytest.raises(RuntimeError, match="already started"):
        await ctl.start(stop)


def test_a_synchronous_reconciler_is_refused_at_construction() -> None:
    def sync_fn(request: Request) -> Result:
        return Result()

    class SyncReconciler:
        def reconcile(self, request: Request) -> Result:
            return Result()

    with pytest.raises(TypeError, match="async def"):
        Controller(name(), sync_fn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        Controller(name(), SyncReconciler())  # type: ignore[arg-type]


async def test_a_reconcile_exceeding_reconcile_timeout_is_cancelled_and_retried_with_backoff() -> None:
    clock = FakeClock()
    cancelled = asyncio.Event()
    seen_ids: list[str] = []

    async def hangs_first(request: Request, attempt: int) -> None:
        seen_ids.append(structlog.contextvars.get_contextvars()["reconcile_id"])
        if attempt == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    rec = RecordingReconciler(hangs_first)
    ctl = Controller(name(), rec, clock=clock, reconcile_timeout=30)
    ctl.watch(FakeInformer([cm("a")]))
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    await eventually(lambda: len(rec.calls) == 1 and clock.sleepers >= 1)
    await clock.advance_and_settle(29.9)
    assert not cancelled.is_set()
    await clock.advance_and_settle(0.1)
    await eventually(cancelled.is_set)
    await eventually(lambda: ctl.queue.next_ready_at() is not None)
    await clock.advance_and_settle(0.005)  # retried with the first backoff step
    await eventually(lambda: len(rec.calls) == 2)
    stop.set()
    await asyncio.wait_for(task, 5)
    labels = {"controller": ctl.name}
    assert metrics.REGISTRY.get_sample_value("controller_runtime_reconcile_errors_total", labels) == 1
    assert metrics.REGISTRY.get_sample_value("controller_runtime_reconcile_panics_total", labels) == 0
    assert len(set(seen_ids)) == 2  # the log context reaches the reconcile even when it runs under a timeout
