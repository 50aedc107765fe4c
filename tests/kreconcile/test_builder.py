"""Builder: for_/owns/watches wiring, event filters, options, names."""

from __future__ import annotations

import asyncio
import gc
import uuid

import pytest

from kreconcile.builder import Builder
from kreconcile.clock import FakeClock
from kreconcile.controller import Controller
from kreconcile.gvk import GVK
from kreconcile.predicates import GenerationChanged, LabelSelector
from kreconcile.reconcile import Request, Result
from kreconcile.testing.fakes import FakeManager, RecordingReconciler, eventually

WORKSPACE = GVK("kaito.sh", "v1beta1", "Workspace")
STATEFULSET = GVK("apps", "v1", "StatefulSet")
NODE = GVK("", "v1", "Node")


def workspace(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": name, "namespace": "ns"},
            "spec": dict(spec)}


def owned_sts(name: str, owner: str, controller: bool = True) -> dict[str, object]:
    ref = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "name": owner, "uid": f"uid-{owner}",
           "controller": controller}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": [ref]}}


def unique() -> str:
    return f"ws-{uuid.uuid4().hex[:8]}"


async def test_for_owns_and_watches_enqueue_the_right_keys_and_the_controller_is_added_to_the_manager() -> None:
    mgr = FakeManager()
    rec = RecordingReconciler()
    ctl = (
        Builder(mgr)
        .named(unique())
        .for_(WORKSPACE)
        .owns(STATEFULSET)
        .watches(NODE, lambda node: [Request("ns", node["metadata"]["labels"]["workspace"])])
        .with_options(clock=FakeClock(), max_concurrent_reconciles=2)
        .complete(rec)
    )
    assert mgr.runnables == [ctl]
    assert ctl.max_concurrent_reconciles == 2 and ctl.needs_leader_election()
    ws_inf, sts_inf, node_inf = (mgr.cache.informers[g] for g in (WORKSPACE, STATEFULSET, NODE))
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    ws_inf.create(workspace("a"))
    await eventually(lambda: rec.calls == [Request("ns", "a")])
    sts_inf.create(owned_sts("a-0", "b"))
    await eventually(lambda: rec.count(Request("ns", "b")) == 1)
    sts_inf.create(owned_sts("x-0", "not-controller", controller=False))  # only the controller owner counts
    node_inf.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"workspace": "c"}}})
    await eventually(lambda: rec.count(Request("ns", "c")) == 1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert Request("ns", "not-controller") not in rec.calls


async def test_event_filter_applies_to_every_watch_and_for_predicates_only_to_the_for_watch() -> None:
    mgr = FakeManager()
    rec = RecordingReconciler()
    ctl = (
        Builder(mgr)
        .named(unique())
        .for_(WORKSPACE, predicates=[GenerationChanged()])
        .owns(STATEFULSET)
        .with_event_filter(LabelSelector({"matchLabels": {"team": "ml"}}))
        .with_options(clock=FakeClock())
        .complete(rec)
    )
    ws_inf, sts_inf = mgr.cache.informers[WORKSPACE], mgr.cache.informers[STATEFULSET]
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    labelled = workspace("a")
    labelled["metadata"]["labels"] = {"team": "ml"}  # type: ignore[index]
    ws_inf.create(labelled)
    ws_inf.create(workspace("unlabelled"))
    await eventually(lambda: len(rec.calls) == 1)
    stored = ws_inf.get("ns", "a")
    stored["status"] = {"ready": True}  # a status-only write: no generation change
    ws_inf.update(stored)
    sts = owned_sts("a-0", "a")
    sts["metadata"]["labels"] = {"team": "ml"}  # type: ignore[index]
    sts_inf.create(sts)
    await eventually(lambda: len(rec.calls) == 2)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert rec.calls == [Request("ns", "a"), Request("ns", "a")]


def test_default_name_is_the_lowercase_kind_and_duplicate_names_are_refused() -> None:
    kind = GVK("example.com", "v1", f"Kind{uuid.uuid4().hex[:6]}")
    ctl = Builder(FakeManager()).for_(kind).complete(RecordingReconciler())
    assert ctl.name == kind.kind.lower()
    with pytest.raises(ValueError, match="already used"):
        Builder(FakeManager()).for_(kind).complete(RecordingReconciler())
    with pytest.raises(ValueError, match="already used"):
        Controller(kind.kind.lower(), RecordingReconciler())


def test_builder_refuses_incomplete_or_contradictory_configuration() -> None:
    with pytest.raises(ValueError, match="for_"):
        Builder(FakeManager()).complete(RecordingReconciler())
    with pytest.raises(ValueError, match="watches nothing"):
        Builder(FakeManager()).named(unique()).complete(RecordingReconciler())
    with pytest.raises(ValueError, match="for_"):
        Builder(FakeManager()).owns(STATEFULSET)
    with pytest.raises(ValueError, match="already called"):
        Builder(FakeManager()).for_(WORKSPACE).for_(STATEFULSET)
    with pytest.raises(ValueError, match="max_concurrent_reconciles"):
        Builder(FakeManager()).named(unique()).for_(WORKSPACE).with_options(max_concurrent_reconciles=0).complete(
            RecordingReconciler()
        )


async def test_a_plain_async_function_can_be_the_reconciler() -> None:
    mgr = FakeManager()
    seen: list[Request] = []

    async def reconcile(request: Request) -> Result | None:
        seen.append(request)
        return None

    ctl = Builder(mgr).named(unique()).for_(WORKSPACE).with_options(clock=FakeClock()).complete(reconcile)
    mgr.cache.informers[WORKSPACE].create(workspace("a"))
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.start(stop))
    await eventually(lambda: seen == [Request("ns", "a")])
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_name_is_free_again_once_its_controller_has_stopped() -> None:
    shared = unique()
    first = Builder(FakeManager()).named(shared).for_(WORKSPACE).with_options(clock=FakeClock()).complete(
        RecordingReconciler())
    with pytest.raises(ValueError, match="already used"):
        Builder(FakeManager()).named(shared).for_(WORKSPACE).complete(RecordingReconciler())
    stop = asyncio.Event()
    stop.set()
    await first.start(stop)
    second = Builder(FakeManager()).named(shared).for_(WORKSPACE).complete(RecordingReconciler())
    del first  # the stopped controller going away must not free the name the second one holds
    gc.collect()
    with pytest.raises(ValueError, match="already used"):
        Controller(shared, RecordingReconciler())
    assert second.name == shared
