"""Rule 3: optimistic concurrency: a stale resourceVersion on PUT or in a patch is a 409 Conflict."""

from __future__ import annotations

from .conftest import WIDGET_API, Cluster


async def test_put_with_stale_version_conflicts_and_changes_nothing(cluster: Cluster) -> None:
    obj = await cluster.create("configmaps", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    path = cluster.ns_path("configmaps", name="a")
    status, fresh = await cluster.request("PUT", path, {**obj, "data": {"v": "2"}})
    assert status == 200
    status, body = await cluster.request("PUT", path, {**obj, "data": {"v": "3"}})
    assert (status, body["reason"]) == (409, "Conflict")
    _, now = await cluster.request("GET", path)
    assert now["data"] == {"v": "2"} and now["metadata"]["resourceVersion"] == fresh["metadata"]["resourceVersion"]


async def test_patch_carrying_a_stale_version_conflicts(cluster: Cluster) -> None:
    obj = await cluster.create("configmaps", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    path = cluster.ns_path("configmaps", name="a")
    await cluster.request("PATCH", path, {"data": {"v": "2"}}, "application/merge-patch+json")
    stale = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "data": {"v": "3"}}
    status, body = await cluster.request("PATCH", path, stale, "application/merge-patch+json")
    assert (status, body["reason"]) == (409, "Conflict")


async def test_put_without_version_is_unconditional(cluster: Cluster) -> None:
    await cluster.create("configmaps", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    status, body = await cluster.request("PUT", cluster.ns_path("configmaps", name="a"),
                                         {"metadata": {"name": "a"}, "data": {"v": "9"}})
    assert status == 200 and body["data"] == {"v": "9"}


async def test_custom_resources_need_a_version_on_put(cluster: Cluster) -> None:
    await cluster.ensure_widget_crd()
    body = {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}}
    created = await cluster.create("widgets", body, WIDGET_API)
    path = cluster.ns_path("widgets", WIDGET_API, "w")
    status, error = await cluster.request("PUT", path, {**body, "spec": {"size": 3}})
    assert (status, error["reason"]) == (422, "Invalid")
    assert error["details"]["causes"][0]["field"] == "metadata.resourceVersion"
    status, updated = await cluster.request("PUT", path, {**created, "spec": {"size": 3}})
    assert status == 200 and updated["spec"]["size"] == 3


async def test_dry_run_validates_without_storing(cluster: Cluster) -> None:
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "dry"}},
                                         params={"dryRun": "All"})
    assert status == 201 and body["metadata"]["name"] == "dry"
    status, _ = await cluster.request("GET", cluster.ns_path("configmaps", name="dry"))
    assert status == 404
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "Bad_Name"}},
                                         params={"dryRun": "All"})
    assert (status, body["reason"]) == (422, "Invalid")
    await cluster.create("configmaps", {"metadata": {"name": "real"}, "data": {"k": "1"}})
    status, body = await cluster.request("PATCH", cluster.ns_path("configmaps", name="real"), {"data": {"k": "2"}},
                                         "application/merge-patch+json", params={"dryRun": "All"})
    assert status == 200 and body["data"] == {"k": "2"}
    _, stored = await cluster.request("GET", cluster.ns_path("configmaps", name="real"))
    assert stored["data"] == {"k": "1"}
    status, _ = await cluster.request("DELETE", cluster.ns_path("configmaps", name="real"), params={"dryRun": "All"})
    assert status == 200
    status, _ = await cluster.request("GET", cluster.ns_path("configmaps", name="real"))
    assert status == 200
