"""Rule 8: list resourceVersion, pagination, watch resume, 410 Expired, bookmarks, timeoutSeconds, RV=0 burst."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import Cluster, read_events


async def test_list_carries_the_collection_version(cluster: Cluster) -> None:
    created = await cluster.create("configmaps", {"metadata": {"name": "a"}})
    status, body = await cluster.request("GET", cluster.ns_path("configmaps"))
    assert status == 200 and body["kind"] == "ConfigMapList"
    assert int(body["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])


async def test_pagination_with_limit_and_continue(cluster: Cluster) -> None:
    for i in range(5):
        await cluster.create("configmaps", {"metadata": {"name": f"p{i}"}})
    _, first = await cluster.request("GET", cluster.ns_path("configmaps"), params={"limit": "2"})
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["continue"] and first["metadata"]["remainingItemCount"] == 3
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        _, page = await cluster.request("GET", cluster.ns_path("configmaps"), params={"limit": "2",
                                                                                      "continue": token})
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [f"p{i}" for i in range(5)]


async def test_watch_from_a_version_replays_only_later_events(cluster: Cluster) -> None:
    a = await cluster.create("configmaps", {"metadata": {"name": "a"}})
    await cluster.create("configmaps", {"metadata": {"name": "b"}})
    params = {"watch": "true", "resourceVersion": a["metadata"]["resourceVersion"], "timeoutSeconds": "20"}
    async with cluster.http.get(cluster.ns_path("configmaps"), params=params) as w:
        await cluster.request("PATCH", cluster.ns_path("configmaps", name="a"), {"data": {"k": "v"}},
                              "application/merge-patch+json")
        events = await read_events(w, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("MODIFIED", "a")]


async def test_watch_without_version_sends_the_initial_burst(cluster: Cluster) -> None:
    for name in ("a", "b"):
        await cluster.create("configmaps", {"metadata": {"name": name}})
    for rv in ("0", None):
        params = {"watch": "true", "timeoutSeconds": "20"}
        if rv is not None:
            params["resourceVersion"] = rv
        async with cluster.http.get(cluster.ns_path("configmaps"), params=params) as w:
            burst = await read_events(w, 2)
        assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in burst) == [("ADDED", "a"),
                                                                                        ("ADDED", "b")]


async def _expect_expired(cluster: Cluster, rv: str) -> None:
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "10"}
    async with cluster.http.get(cluster.ns_path("configmaps"), params=params) as w:
        assert w.status == 200  # the error arrives as a watch event, not as the HTTP status
        events = await read_events(w, 2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


async def test_watch_from_before_the_cache_started_is_410(cluster: Cluster) -> None:
    await _expect_expired(cluster, "1")


async def test_watch_from_a_version_older_than_the_window_is_410(cluster: Cluster) -> None:
    if cluster.emulator is None:
        pytest.skip("the real watch cache sizes its window dynamically; the emulator's is watch_window events")
    first = await cluster.create("configmaps", {"metadata": {"name": "old"}})
    path = cluster.ns_path("configmaps", name="old")
    for i in range(150):  # more than the watch cache's 100 events
        await cluster.request("PATCH", path, {"data": {"i": str(i)}}, "application/merge-patch+json")
    await _expect_expired(cluster, first["metadata"]["resourceVersion"])


async def test_bookmarks_arrive_before_the_timeout_and_the_stream_ends(cluster: Cluster) -> None:
    created = await cluster.create("configmaps", {"metadata": {"name": "b"}})
    params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "3",
              "resourceVersion": created["metadata"]["resourceVersion"]}
    params["fieldSelector"] = "metadata.name=b"

    async def other_writes() -> None:  # events the watch filters out still advance the bookmark version
        for i in range(8):
            await cluster.create("configmaps", {"metadata": {"name": f"other-{i}"}})
            await asyncio.sleep(0.25)

    loop = asyncio.get_running_loop()
    start = loop.time()
    writer = asyncio.create_task(other_writes())
    async with cluster.http.get(cluster.ns_path("configmaps"), params=params) as w:
        events = await read_events(w, 10, timeout=15)
    elapsed = loop.time() - start
    await writer
    assert any(e["type"] == "BOOKMARK" for e in events)
    bookmark = next(e for e in events if e["type"] == "BOOKMARK")
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert all(e["type"] == "BOOKMARK" for e in events)  # the other objects were filtered out
    assert elapsed < 12  # timeoutSeconds ended the stream


async def test_label_selector_transitions_in_watch(cluster: Cluster) -> None:
    obj = await cluster.create("configmaps", {"metadata": {"name": "t", "labels": {"pick": "no"}}})
    params = {"watch": "true", "labelSelector": "pick=yes", "resourceVersion": obj["metadata"]["resourceVersion"],
              "timeoutSeconds": "20"}
    path = cluster.ns_path("configmaps", name="t")
    async with cluster.http.get(cluster.ns_path("configmaps"), params=params) as w:
        await cluster.request("PATCH", path, {"metadata": {"labels": {"pick": "yes"}}}, "application/merge-patch+json")
        await cluster.request("PATCH", path, {"metadata": {"labels": {"pick": "no"}}}, "application/merge-patch+json")
        events = await read_events(w, 2)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
