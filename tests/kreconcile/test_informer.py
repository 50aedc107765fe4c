"""SharedInformer against an in-memory list/watch source (the HTTP versions are in test_informer_http.py)."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from kreconcile.clock import FakeClock
from kreconcile.errors import Expired, ServerError
from kreconcile.gvk import GVK
from kreconcile.informer import NAMESPACE_INDEX, SharedInformer, object_key

CM = GVK("", "v1", "ConfigMap")


def cm(name: str, ns: str = "default", rv: int = 1, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv),
                     "managedFields": [{"manager": "kubectl"}]},
        "data": dict(data),
    }


class FakeSource:
    """A server-like object store with a global resourceVersion, a watch stream and fault knobs."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 0
        self.streams: list[asyncio.Queue[tuple[str, dict[str, Any]] | BaseException | None]] = []
        self.expire_next_watch = False
        self.fail_lists = 0
        self.list_calls = 0
        self.list_versions: list[str | None] = []
        self.watch_calls: list[str | None] = []

    def write(self, etype: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = object_key(obj)
        if etype == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        for q in self.streams:
            q.put_nowait((etype, copy.deepcopy(obj)))
        return obj

    def drop_watches(self, error: BaseException | None = None) -> None:
        for q in self.streams:
            q.put_nowait(error)
        self.streams.clear()

    async def list_all(self, gvk: GVK, namespace: str | None = None, *, label_selector: Any = None,
                       field_selector: Any = None, page_size: int = 500,
                       resource_version: str | None = None) -> dict[str, Any]:
        self.list_calls += 1
        self.list_versions.append(resource_version)
        if self.fail_lists:
            self.fail_lists -= 1
            raise ServerError("etcd unavailable")
        return {"metadata": {"resourceVersion": str(self.rv)},
                "items": [copy.deepcopy(o) for o in self.objects.values()]}

    async def watch(self, gvk: GVK, namespace: str | None = None, *, resource_version: str | None = None,
                    label_selector: str | Mapping[str, str] | None = None,
                    field_selector: str | Mapping[str, str] | None = None, timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watch_calls.append(resource_version)
        assert allow_bookmarks
        assert timeout_seconds is not None and 300 <= timeout_seconds <= 600
        if self.expire_next_watch:
            self.expire_next_watch = False
            raise Expired("too old resource version")
        q: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException | None] = asyncio.Queue()
        self.streams.append(q)
        while True:
            item = await q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    def on_add(self, obj: dict[str, Any], is_in_initial_list: bool) -> None:
        self.events.append(("add-initial" if is_in_initial_list else "add", object_key(obj),
                            obj["metadata"].get("resourceVersion")))

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", object_key(new), new["metadata"].get("resourceVersion")))

    def on_delete(self, obj: dict[str, Any]) -> None:
        self.events.append(("delete", object_key(obj), obj["metadata"].get("resourceVersion")))


async def until(cond: Any, timeout: float = 2.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0)
    await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def running() -> AsyncIterator[tuple[FakeSource, SharedInformer, Recorder, FakeClock]]:
    src, clock = FakeSource(), FakeClock()
    src.write("ADDED", cm("a"))
    src.write("ADDED", cm("b", ns="other"))
    inf = SharedInformer(src, CM, clock=clock, rng=random.Random(1))
    rec = Recorder()
    inf.add_event_handler(rec)
    stop = asyncio.Event()
    task = asyncio.create_task(inf.run(stop))
    await asyncio.wait_for(inf.wait_for_sync(), 2)
    await until(lambda: src.streams)
    yield src, inf, rec, clock
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_initial_list_is_delivered_as_initial_adds_then_watch_starts_at_list_version(running: Any) -> None:
    src, inf, rec, _ = running
    assert sorted(rec.events) == [("add-initial", "default/a", "1"), ("add-initial", "other/b", "2")]
    assert inf.has_synced()
    assert src.watch_calls == ["2"]


async def test_watch_events_update_store_and_handlers_and_managed_fields_are_stripped(running: Any) -> None:
    src, inf, rec, _ = running
    src.write("MODIFIED", cm("a", x="1"))
    src.write("ADDED", cm("c"))
    src.write("DELETED", cm("b", ns="other"))
    await until(lambda: len(rec.events) == 5)
    assert rec.events[2:] == [("update", "default/a", "3"), ("add", "default/c", "4"), ("delete", "other/b", "5")]
    assert inf.get("default/a")["data"] == {"x": "1"}
    assert "managedFields" not in inf.get("default/a")["metadata"]
    assert inf.get("other/b") is None
    assert sorted(o["metadata"]["name"] for o in inf.by_index(NAMESPACE_INDEX, "default")) == ["a", "c"]
    assert inf.by_index(NAMESPACE_INDEX, "other") == []
    assert inf.last_sync_resource_version == "5"


async def test_relist_after_410_loses_no_update_and_synthesizes_deletes(running: Any) -> None:
    """Property 4: changes made while the watch was down are all observed after the 410 relist."""
    src, inf, rec, _ = running
    stale = list(src.streams)
    src.streams.clear()  # the watch connection is stuck; changes below are not streamed to us
    src.write("MODIFIED", cm("a", changed="yes"))
    src.write("DELETED", cm("b", ns="other"))
    src.write("ADDED", cm("new"))
    before = len(rec.events)
    for q in stale:  # the server ends the stale stream with an ERROR 410 event
        q.put_nowait(Expired("too old resource version"))
    await until(lambda: inf.lists == 2 and src.streams)
    assert sorted(rec.events[before:]) == [
        ("add-initial", "default/new", "5"),
        ("delete", "other/b", "2"),  # the last state we knew (DeletedFinalStateUnknown)
        ("update", "default/a", "3"),
    ]
    assert inf.get("default/a")["data"] == {"changed": "yes"}
    assert sorted(inf.keys()) == ["default/a", "default/new"]
    assert src.list_versions == ["0", None]  # first list from the watch cache, the relist consistent
    assert src.watch_calls[-1] == "5"


async def test_rewatch_that_gets_410_relists(running: Any) -> None:
    src, inf, _rec, clock = running
    src.expire_next_watch = True
    src.drop_watches(ConnectionResetError("peer reset"))
    await until(lambda: clock.sleepers == 1)
    assert inf.lists == 1  # a dropped connection only backs off...
    await clock.advance_and_settle(clock.next_deadline() - clock.now())
    await until(lambda: inf.lists == 2 and len(src.watch_calls) == 3)  # ...the rewatch got 410: relist, watch
    assert src.watch_calls == ["2", "2", "2"]


async def test_stream_errors_back_off_then_resume_from_last_resource_version(running: Any) -> None:
    src, inf, _rec, clock = running
    src.write("MODIFIED", cm("a", v="1"))
    await until(lambda: inf.last_sync_resource_version == "3")
    src.drop_watches(ConnectionResetError("peer reset"))
    await until(lambda: clock.sleepers == 1)
    delay = clock.next_deadline()
    assert delay is not None and 0.8 <= delay <= 1.6  # 800 ms with up to 100 % jitter
    calls = len(src.watch_calls)
    await clock.advance_and_settle(delay)
    await until(lambda: len(src.watch_calls) == calls + 1)
    assert src.watch_calls[-1] == "3"
    assert src.list_calls == 1  # no relist needed


async def test_late_handler_gets_cache_replayed_as_initial_adds(running: Any) -> None:
    _src, inf, _, _ = running
    late = Recorder()
    reg = inf.add_event_handler(late)
    assert reg.has_synced()
    assert sorted(e[1] for e in late.events if e[0] == "add-initial") == ["default/a", "other/b"]


async def test_failed_list_is_retried_with_growing_backoff() -> None:
    src, clock = FakeSource(), FakeClock()
    src.write("ADDED", cm("a"))
    src.fail_lists = 2
    inf = SharedInformer(src, CM, clock=clock, rng=random.Random(0))
    stop = asyncio.Event()
    task = asyncio.create_task(inf.run(stop))
    delays = []
    for _ in range(2):
        await until(lambda: clock.sleepers == 1)
        d = clock.next_deadline()
        assert d is not None
        delays.append(d - clock.now())
        await clock.advance_and_settle(delays[-1])
    assert await inf.wait_for_sync(2)
    assert 0.8 <= delays[0] <= 1.6 and 1.6 <= delays[1] <= 3.2
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_custom_index_and_removal_keep_index_consistent(running: Any) -> None:
    src, inf, _, _ = running
    inf.add_index("data.owner", lambda o: [o.get("data", {}).get("owner", "")] if o.get("data") else [])
    src.write("MODIFIED", cm("a", owner="alice"))
    await until(lambda: bool(inf.by_index("data.owner", "alice")))
    src.write("MODIFIED", cm("a", owner="bob"))
    await until(lambda: bool(inf.by_index("data.owner", "bob")))
    assert inf.by_index("data.owner", "alice") == []
    with pytest.raises(KeyError, match="add_index"):
        inf.by_index("nope", "x")


async def test_handler_exception_does_not_stop_the_informer(running: Any) -> None:
    src, inf, rec, _ = running

    class Boom(Recorder):
        def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
            raise RuntimeError("boom")

    inf.add_event_handler(Boom())
    src.write("MODIFIED", cm("a", x="2"))
    await until(lambda: rec.events[-1][0] == "update")
    assert inf.get("default/a")["data"] == {"x": "2"}


async def test_resync_redelivers_every_object_as_update_with_same_version() -> None:
    src, clock = FakeSource(), FakeClock()
    src.write("ADDED", cm("a"))
    inf = SharedInformer(src, CM, clock=clock, resync_period=60)
    rec = Recorder()
    inf.add_event_handler(rec)
    stop = asyncio.Event()
    task = asyncio.create_task(inf.run(stop))
    await inf.wait_for_sync(2)
    await until(lambda: clock.sleepers >= 1)
    await clock.advance_and_settle(60)
    await until(lambda: ("update", "default/a", "1") in rec.events)
    stop.set()
    await asyncio.wait_for(task, 2)
    with pytest.raises(ValueError, match="resync_period"):
        SharedInformer(src, CM, resync_period=0)


async def test_bookmarks_advance_the_resume_version_without_events(running: Any) -> None:
    src, inf, rec, _ = running
    before = len(rec.events)
    for q in src.streams:
        q.put_nowait(("BOOKMARK", {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": "42"}}))
    await until(lambda: inf.last_sync_resource_version == "42")
    assert len(rec.events) == before and len(inf) == 2
    src.drop_watches()  # a normal end of the stream: watch again from the bookmark
    await until(lambda: src.watch_calls[-1] == "42")
