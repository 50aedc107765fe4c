"""Rule 4: the four patch types by Content-Type."""

from __future__ import annotations

import json

from .conftest import WIDGET_API, Cluster
from .test_rule02_metadata import DEPLOYMENT

JSON_PATCH = "application/json-patch+json"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


async def test_json_patch_operations(cluster: Cluster) -> None:
    await cluster.create("configmaps", {"metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}})
    path = cluster.ns_path("configmaps", name="a")
    ops = [{"op": "test", "path": "/data/x", "value": "1"}, {"op": "add", "path": "/data/z", "value": "3"},
           {"op": "remove", "path": "/data/y"}, {"op": "replace", "path": "/data/x", "value": "9"},
           {"op": "copy", "from": "/data/z", "path": "/data/w"}, {"op": "move", "from": "/data/w", "path": "/data/v"}]
    status, body = await cluster.request("PATCH", path, ops, JSON_PATCH)
    assert status == 200 and body["data"] == {"x": "9", "z": "3", "v": "3"}
    status, body = await cluster.request("PATCH", path, [{"op": "test", "path": "/data/x", "value": "0"}],
                                         JSON_PATCH)
    assert (status, body["reason"]) == (422, "Invalid")
    status, body = await cluster.request("PATCH", path, {"op": "add"}, JSON_PATCH)
    assert (status, body["reason"]) == (400, "BadRequest")


async def test_merge_patch_rfc7386(cluster: Cluster) -> None:
    await cluster.create("configmaps", {"metadata": {"name": "a", "labels": {"k": "v", "drop": "me"}},
                                        "data": {"x": "1"}})
    patch = {"metadata": {"labels": {"drop": None, "new": "yes"}}, "data": {"x": "2"}}
    status, body = await cluster.request("PATCH", cluster.ns_path("configmaps", name="a"), patch, MERGE)
    assert status == 200
    assert body["metadata"]["labels"] == {"k": "v", "new": "yes"} and body["data"] == {"x": "2"}


async def test_strategic_merge_merges_containers_by_name(cluster: Cluster) -> None:
    await cluster.create("deployments", DEPLOYMENT, "apps/v1")
    path = cluster.ns_path("deployments", "apps/v1", "d")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy"},
                                                           {"name": "c", "image": "busybox:2"}]}}}}
    status, body = await cluster.request("PATCH", path, patch, STRATEGIC)
    assert status == 200
    containers = body["spec"]["template"]["spec"]["containers"]
    # patch items in patch order (apimachinery's normalizeElementOrder)
    assert [(c["name"], c["image"]) for c in containers] == [("sidecar", "envoy"), ("c", "busybox:2")]
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    status, body = await cluster.request("PATCH", path, delete, STRATEGIC)
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["c"]


async def test_strategic_merge_on_custom_resources_is_415(cluster: Cluster) -> None:
    await cluster.ensure_widget_crd()
    await cluster.create("widgets", {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": "w"},
                                     "spec": {"size": 2}}, WIDGET_API)
    status, body = await cluster.request("PATCH", cluster.ns_path("widgets", WIDGET_API, "w"),
                                         {"spec": {"size": 3}}, STRATEGIC)
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


async def _apply(cluster: Cluster, manager: str, data: dict[str, str], force: bool = False) -> tuple[int, dict]:
    cfg = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}
    params = {"fieldManager": manager}
    if force:
        params["force"] = "true"
    return await cluster.request("PATCH", cluster.ns_path("configmaps", name="ssa"),
                                 raw=json.dumps(cfg).encode(), content_type=APPLY, params=params)


def _owners(obj: dict) -> dict[str, set[str]]:
    out = {}
    for entry in obj["metadata"].get("managedFields") or []:
        if entry["operation"] == "Apply":
            out[entry["manager"]] = set((entry["fieldsV1"].get("f:data") or {}).keys())
    return out


async def test_server_side_apply_ownership(cluster: Cluster) -> None:
    status, created = await _apply(cluster, "alice", {"a": "1", "b": "1"})
    assert status == 201 and created["data"] == {"a": "1", "b": "1"}
    assert _owners(created) == {"alice": {"f:a", "f:b"}}
    status, updated = await _apply(cluster, "alice", {"a": "2", "b": "1"})
    assert status == 200 and updated["data"]["a"] == "2"
    status, conflict = await _apply(cluster, "bob", {"a": "3"})
    assert (status, conflict["reason"]) == (409, "Conflict")
    assert [c["field"] for c in conflict["details"]["causes"]] == [".data.a"]
    assert all(c["reason"] == "FieldManagerConflict" for c in conflict["details"]["causes"])
    status, shared = await _apply(cluster, "bob", {"b": "1"})
    assert status == 200 and _owners(shared)["bob"] == {"f:b"}  # same value: co-owned, not a conflict
    status, forced = await _apply(cluster, "bob", {"a": "3", "b": "1"}, force=True)
    assert status == 200 and forced["data"]["a"] == "3"
    assert _owners(forced) == {"alice": {"f:b"}, "bob": {"f:a", "f:b"}}
    status, dropped = await _apply(cluster, "alice", {"c": "1"})
    assert status == 200 and dropped["data"] == {"a": "3", "b": "1", "c": "1"}  # b is still bob's
    status, dropped = await _apply(cluster, "bob", {})
    assert status == 200 and dropped["data"] == {"c": "1"}
