"""Core REST semantics of the emulator: metadata, concurrency, list/watch, CRDs, status (reference items 1-9)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kreconcile.clock import FakeClock
from kreconcile.testing import APIServer
from kreconcile.testing.kubeconfig import load

CM = "/api/v1/namespaces/default/configmaps"
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kreconcile.dev"},
    "spec": {
        "group": "test.kreconcile.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "size": {"type": "integer", "minimum": 1, "default": 3},
                    "color": {"type": "string", "enum": ["red", "blue"]},
                }},
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
            }}},
        }],
    },
}
WIDGETS = "/apis/test.kreconcile.dev/v1/namespaces/default/widgets"


@pytest.fixture
async def http(apiserver: APIServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with load(apiserver.kubeconfig_path).session() as session:
        yield session


async def test_create_answers_201_with_server_set_metadata(http: aiohttp.ClientSession) -> None:
    r = await http.post(CM, json={"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert r.status == 201
    obj = await r.json()
    meta = obj["metadata"]
    assert meta["namespace"] == "default" and meta["uid"] and meta["resourceVersion"].isdigit()
    assert meta["creationTimestamp"].endswith("Z") and len(meta["creationTimestamp"]) == 20
    assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
    r = await http.post(CM, json={"metadata": {"name": "a"}})
    body = await r.json()
    assert (r.status, body["reason"], body["kind"]) == (409, "AlreadyExists", "Status")


async def test_resource_versions_strictly_increase_across_resources(http: aiohttp.ClientSession) -> None:
    versions = []
    for i in range(3):
        r = await http.post(CM, json={"metadata": {"name": f"c{i}"}})
        versions.append(int((await r.json())["metadata"]["resourceVersion"]))
        r = await http.post("/api/v1/namespaces/default/secrets", json={"metadata": {"name": f"s{i}"}})
        versions.append(int((await r.json())["metadata"]["resourceVersion"]))
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


async def test_stale_resource_version_on_put_is_a_conflict(http: aiohttp.ClientSession) -> None:
    created = await (await http.post(CM, json={"metadata": {"name": "a"}, "data": {"k": "1"}})).json()
    rv = created["metadata"]["resourceVersion"]
    first = await http.put(f"{CM}/a", json={**created, "data": {"k": "2"}})
    assert first.status == 200
    second = await http.put(f"{CM}/a", json={**created, "data": {"k": "3"}})
    body = await second.json()
    assert (second.status, body["reason"]) == (409, "Conflict")
    current = await (await http.get(f"{CM}/a")).json()
    assert current["data"] == {"k": "2"} and current["metadata"]["resourceVersion"] != rv


async def test_generate_name_and_namespace_mismatch(http: aiohttp.ClientSession) -> None:
    r = await http.post(CM, json={"metadata": {"generateName": "job-"}})
    name = (await r.json())["metadata"]["name"]
    assert r.status == 201 and name.startswith("job-") and len(name) == 9
    r = await http.post(CM, json={"metadata": {"name": "x", "namespace": "kube-system"}})
    assert (r.status, (await r.json())["reason"]) == (400, "BadRequest")
    r = await http.post("/api/v1/namespaces/nope/configmaps", json={"metadata": {"name": "x"}})
    assert (r.status, (await r.json())["reason"]) == (404, "NotFound")


async def test_list_has_collection_resource_version_and_selectors(http: aiohttp.ClientSession) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        await http.post(CM, json={"metadata": {"name": name, "labels": {"tier": tier}}})
    r = await http.get(CM, params={"labelSelector": "tier in (web)"})
    body = await r.json()
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "c"]
    assert body["kind"] == "ConfigMapList" and int(body["metadata"]["resourceVersion"]) > 0
    r = await http.get(CM, params={"labelSelector": "tier!=web"})
    assert [i["metadata"]["name"] for i in (await r.json())["items"]] == ["b"]
    r = await http.get(CM, params={"fieldSelector": "metadata.name=b"})
    assert [i["metadata"]["name"] for i in (await r.json())["items"]] == ["b"]
    r = await http.get(CM, params={"labelSelector": "tier in (web"})
    assert r.status == 400
    r = await http.get(CM, params={"fieldSelector": "spec.nope=1"})
    assert r.status == 400


async def test_pagination_walks_all_items_once(http: aiohttp.ClientSession) -> None:
    for i in range(7):
        await http.post(CM, json={"metadata": {"name": f"p{i}"}})
    seen: list[str] = []
    params: dict[str, str] = {"limit": "3"}
    pages = 0
    while True:
        body = await (await http.get(CM, params=params)).json()
        pages += 1
        seen += [i["metadata"]["name"] for i in body["items"]]
        token = body["metadata"].get("continue")
        if not token:
            break
        params = {"limit": "3", "continue": token}
    assert seen == [f"p{i}" for i in range(7)] and pages == 3


async def _read_events(resp: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    events = []
    while len(events) < count:
        line = await asyncio.wait_for(resp.content.readline(), 10)
        if not line:
            break
        events.append(json.loads(line))
    return events


async def test_watch_from_resource_version_replays_only_later_events(http: aiohttp.ClientSession) -> None:
    first = await (await http.post(CM, json={"metadata": {"name": "a"}})).json()
    await http.post(CM, json={"metadata": {"name": "b"}})
    async with http.get(CM, params={"watch": "true", "resourceVersion": first["metadata"]["resourceVersion"]}) as w:
        await http.delete(f"{CM}/a")
        events = await _read_events(w, 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("DELETED", "a")]


async def test_watch_without_version_starts_with_added_burst(http: aiohttp.ClientSession) -> None:
    await http.post(CM, json={"metadata": {"name": "a"}})
    async with http.get(CM, params={"watch": "1"}) as w:
        burst = await _read_events(w, 1)
        await http.patch(f"{CM}/a", data=b'{"data":{"x":"y"}}',
                         headers={"Content-Type": "application/merge-patch+json"})
        live = await _read_events(w, 1)
    assert burst[0]["type"] == "ADDED" and live[0]["type"] == "MODIFIED"
    assert live[0]["object"]["data"] == {"x": "y"}


async def test_watch_older_than_window_gets_410_expired_event() -> None:
    async with APIServer(watch_window=3) as server, load(server.kubeconfig_path).session() as http:
        first = await (await http.post(CM, json={"metadata": {"name": "a"}})).json()
        for i in range(5):
            await http.post(CM, json={"metadata": {"name": f"n{i}"}})
        async with http.get(CM, params={"watch": "true",
                                        "resourceVersion": first["metadata"]["resourceVersion"]}) as w:
            assert w.status == 200
            events = await _read_events(w, 2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


async def test_bookmarks_and_timeout_follow_the_server_clock() -> None:
    clock = FakeClock()
    async with APIServer(clock=clock, bookmark_interval=5.0) as server, \
            load(server.kubeconfig_path).session() as http:
        async with http.get(CM, params={"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "12",
                                        "resourceVersion": str(server.store.rv)}) as w:
            for _ in range(200):
                if clock.sleepers:
                    break
                await asyncio.sleep(0.01)
            other = await (await http.post("/api/v1/namespaces/kube-system/configmaps",
                                           json={"metadata": {"name": "elsewhere"}})).json()
            await clock.advance_and_settle(5.0)
            bookmark = await _read_events(w, 1)
            for _ in range(200):
                if clock.sleepers:
                    break
                await asyncio.sleep(0.01)
            clock.advance(10.0)
            rest = await asyncio.wait_for(w.content.read(), 10)
    assert bookmark[0]["type"] == "BOOKMARK"
    assert bookmark[0]["object"]["metadata"] == {"resourceVersion": other["metadata"]["resourceVersion"],
                                                 "creationTimestamp": None}
    assert b"BOOKMARK" in rest or rest == b""  # the stream ended after the 12 s timeout


async def test_crd_is_served_with_defaults_validation_and_status_subresource(http: aiohttp.ClientSession) -> None:
    r = await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=WIDGET_CRD)
    crd = await r.json()
    assert r.status == 201
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    r = await http.post(WIDGETS, json={"apiVersion": "test.kreconcile.dev/v1", "kind": "Widget",
                                       "metadata": {"name": "w"}, "spec": {"junk": 1},
                                       "status": {"ready": True}})
    w = await r.json()
    assert r.status == 201
    assert w["spec"] == {"size": 3} and "status" not in w and w["metadata"]["generation"] == 1
    assert 'unknown field \\"spec.junk\\"' in r.headers.get("Warning", "")
    r = await http.post(WIDGETS, json={"apiVersion": "test.kreconcile.dev/v1", "kind": "Widget",
                                       "metadata": {"name": "bad"}, "spec": {"size": 0, "color": "green"}})
    body = await r.json()
    assert (r.status, body["reason"]) == (422, "Invalid")
    assert {c["field"] for c in body["details"]["causes"]} == {"spec.size", "spec.color"}
    w["status"] = {"ready": True}
    r = await http.put(f"{WIDGETS}/w/status", json=w)
    after = await r.json()
    assert after["status"] == {"ready": True} and after["metadata"]["generation"] == 1
    after["spec"]["size"] = 5
    after["status"] = {"ready": False}
    r = await http.put(f"{WIDGETS}/w", json=after)
    main = await r.json()
    assert main["spec"]["size"] == 5 and main["status"] == {"ready": True} and main["metadata"]["generation"] == 2


async def test_discovery_version_and_health(http: aiohttp.ClientSession) -> None:
    assert (await http.get("/healthz")).status == 200
    assert (await http.get("/readyz")).status == 200
    assert (await (await http.get("/version")).json())["major"] == "1"
    core = await (await http.get("/api/v1")).json()
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "pods/log", "pods/binding", "nodes", "nodes/status", "namespaces"} <= names
    apps = await (await http.get("/apis/apps/v1")).json()
    assert {"deployments/scale", "statefulsets/status"} <= {r["name"] for r in apps["resources"]}


async def test_requests_without_the_token_are_unauthorized(apiserver: APIServer) -> None:
    access = load(apiserver.kubeconfig_path)
    access.headers = {}
    async with access.session() as anon:
        r = await anon.get(CM)
        assert (r.status, (await r.json())["reason"]) == (401, "Unauthorized")
        assert (await anon.get("/healthz")).status == 200
