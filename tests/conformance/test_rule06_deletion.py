"""Rule 6: finalizers, deletionTimestamp and ownerReference cascades (background, foreground, orphan)."""

from __future__ import annotations

from typing import Any

from .conftest import Cluster, eventually, read_events


def _owned(name: str, owner: dict[str, Any], block: bool = False) -> dict[str, Any]:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"]}
    if block:
        ref["blockOwnerDeletion"] = True
    return {"metadata": {"name": name, "ownerReferences": [ref]}}


async def _gone(cluster: Cluster, name: str) -> bool:
    status, _ = await cluster.request("GET", cluster.ns_path("configmaps", name=name))
    return status == 404


async def test_finalizers_hold_the_object_until_removed(cluster: Cluster) -> None:
    obj = await cluster.create("configmaps", {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    path = cluster.ns_path("configmaps", name="f")
    params = {"watch": "true", "resourceVersion": obj["metadata"]["resourceVersion"],
              "fieldSelector": "metadata.name=f", "timeoutSeconds": "20"}
    async with cluster.http.get(cluster.ns_path("configmaps"), params=params) as w:
        status, deleting = await cluster.request("DELETE", path)
        assert status in (200, 202) and deleting["metadata"]["deletionTimestamp"]
        modified = await read_events(w, 1)
        assert modified[0]["type"] == "MODIFIED" and modified[0]["object"]["metadata"]["deletionTimestamp"]
        status, body = await cluster.request("PATCH", path, {"metadata": {"finalizers": ["example.com/hold",
                                                                                         "example.com/new"]}},
                                             "application/merge-patch+json")
        assert (status, body["reason"]) == (422, "Invalid")
        status, _ = await cluster.request("PATCH", path, {"metadata": {"finalizers": None}},
                                          "application/merge-patch+json")
        assert status == 200
        deleted = await read_events(w, 1)
    assert deleted[0]["type"] == "DELETED"
    assert await _gone(cluster, "f")


async def test_background_cascade_deletes_dependents(cluster: Cluster) -> None:
    owner = await cluster.create("configmaps", {"metadata": {"name": "owner"}})
    await cluster.create("configmaps", _owned("child", owner))
    status, _ = await cluster.request("DELETE", cluster.ns_path("configmaps", name="owner"),
                                      {"propagationPolicy": "Background"})
    assert status == 200
    assert await _gone(cluster, "owner")
    await eventually(lambda: _gone(cluster, "child"), "the dependent to be garbage-collected")


async def test_foreground_deletes_dependents_first(cluster: Cluster) -> None:
    owner = await cluster.create("configmaps", {"metadata": {"name": "owner"}})
    await cluster.create("configmaps", _owned("child", owner, block=True))
    status, body = await cluster.request("DELETE", cluster.ns_path("configmaps", name="owner"),
                                         {"propagationPolicy": "Foreground"})
    assert status in (200, 202)
    assert "foregroundDeletion" in body["metadata"]["finalizers"] and body["metadata"]["deletionTimestamp"]
    await eventually(lambda: _gone(cluster, "child"), "the dependent to be deleted")
    await eventually(lambda: _gone(cluster, "owner"), "the owner to go after its dependents")


async def test_orphan_keeps_dependents_and_strips_the_reference(cluster: Cluster) -> None:
    owner = await cluster.create("configmaps", {"metadata": {"name": "owner"}})
    await cluster.create("configmaps", _owned("child", owner))
    status, _ = await cluster.request("DELETE", cluster.ns_path("configmaps", name="owner"),
                                      {"propagationPolicy": "Orphan"})
    assert status == 200
    await eventually(lambda: _gone(cluster, "owner"), "the owner to be deleted")

    async def orphaned() -> bool:
        _, child = await cluster.request("GET", cluster.ns_path("configmaps", name="child"))
        return not child["metadata"].get("ownerReferences")

    await eventually(orphaned, "the owner reference to be removed")


async def test_delete_preconditions(cluster: Cluster) -> None:
    obj = await cluster.create("configmaps", {"metadata": {"name": "p"}})
    path = cluster.ns_path("configmaps", name="p")
    status, body = await cluster.request("DELETE", path, {"preconditions": {"uid": "not-the-uid"}})
    assert (status, body["reason"]) == (409, "Conflict")
    status, body = await cluster.request("DELETE", path, {"preconditions": {"resourceVersion": "1"}})
    assert (status, body["reason"]) == (409, "Conflict")
    status, _ = await cluster.request("DELETE", path, {"preconditions": {"uid": obj["metadata"]["uid"]}})
    assert status == 200


async def test_namespace_deletion_removes_its_content(cluster: Cluster) -> None:
    ns = f"{cluster.namespace}-x"
    status, _ = await cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    assert status == 201
    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    for body in ({"metadata": {"name": "c"}}, held):
        status, _ = await cluster.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body)
        assert status == 201
    status, body = await cluster.request("DELETE", f"/api/v1/namespaces/{ns}")
    assert status == 200 and body["status"]["phase"] == "Terminating"
    status, body = await cluster.request("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "d"}})
    assert (status, body["reason"]) == (403, "Forbidden")

    async def held_is_deleting() -> bool:
        _, obj = await cluster.request("GET", f"/api/v1/namespaces/{ns}/configmaps/held")
        return bool(obj["metadata"].get("deletionTimestamp"))

    await eventually(held_is_deleting, "the namespace controller to delete the namespace's content", timeout=60)
    status, _ = await cluster.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/held",
                                      {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    assert status == 200

    async def ns_gone() -> bool:
        s, _ = await cluster.request("GET", f"/api/v1/namespaces/{ns}")
        return s == 404

    await eventually(ns_gone, "the namespace to be finalized", timeout=60)
