"""RESTMapper over a fake discovery endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kreconcile.clock import FakeClock
from kreconcile.errors import NoKindMatchError, NotFound
from kreconcile.gvk import GVK, GVR
from kreconcile.restmapper import RESTMapper

CORE = {"resources": [
    {"name": "pods", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"]},
    {"name": "pods/status", "namespaced": True, "kind": "Pod"},
    {"name": "pods/log", "namespaced": True, "kind": "Pod"},
    {"name": "nodes", "namespaced": False, "kind": "Node"},
]}


class Discovery:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {"/api/v1": CORE}
        self.calls: list[str] = []

    async def __call__(self, path: str) -> dict[str, Any]:
        self.calls.append(path)
        await asyncio.sleep(0)
        if path not in self.docs:
            raise NotFound(f"{path} not found")
        return self.docs[path]


async def test_maps_kinds_to_resources_scopes_and_paths() -> None:
    d = Discovery()
    m = RESTMapper(d)
    pod = await m.mapping(GVK("", "v1", "Pod"))
    assert pod.gvr == GVR("", "v1", "pods") and pod.namespaced
    assert pod.subresources == {"status", "log"}
    assert pod.path("ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"
    node = await m.mapping(GVK("", "v1", "Node"))
    assert not node.namespaced and node.path("ignored", "n1") == "/api/v1/nodes/n1"
    assert d.calls == ["/api/v1"]  # cached
    assert (await m.mapping_for_resource(GVR("", "v1", "nodes"))).gvk.kind == "Node"


async def test_miss_refreshes_discovery_so_new_crds_are_found() -> None:
    d, clock = Discovery(), FakeClock()
    m = RESTMapper(d, clock=clock)
    ws = GVK("kaito.sh", "v1beta1", "Workspace")
    with pytest.raises(NoKindMatchError, match="install its CRD"):
        await m.mapping(ws)
    d.docs["/apis/kaito.sh/v1beta1"] = {"resources": [{"name": "workspaces", "namespaced": True, "kind": "Workspace"}]}
    clock.advance(1.0)
    mapping = await m.mapping(ws)
    assert mapping.path("default", "w") == "/apis/kaito.sh/v1beta1/namespaces/default/workspaces/w"
    assert d.calls == ["/apis/kaito.sh/v1beta1", "/apis/kaito.sh/v1beta1"]


async def test_repeated_misses_are_rate_limited_and_concurrent_misses_share_one_fetch() -> None:
    d, clock = Discovery(), FakeClock()
    m = RESTMapper(d, clock=clock)
    results = await asyncio.gather(*(m.mapping(GVK("", "v1", "Pod")) for _ in range(5)))
    assert {r.gvr.resource for r in results} == {"pods"} and d.calls == ["/api/v1"]
    for _ in range(3):
        with pytest.raises(NoKindMatchError):
            await m.mapping(GVK("", "v1", "Nope"))
    assert d.calls == ["/api/v1"]  # refreshed < 1 s ago: no new request
