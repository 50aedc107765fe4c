"""Rule 1: JSON wire format, 201 on create, Status objects with reason and code, watch=true/True/1."""

from __future__ import annotations

import pytest

from .conftest import Cluster, read_events


async def test_create_is_201_and_errors_are_status_objects(cluster: Cluster) -> None:
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "a"}})
    assert status == 201 and body["kind"] == "ConfigMap"
    cases = [
        ("GET", cluster.ns_path("configmaps", name="missing"), None, 404, "NotFound"),
        ("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "a"}}, 409, "AlreadyExists"),
        ("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "Bad_Name"}}, 422, "Invalid"),
        ("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "x", "namespace": "other"}}, 400,
         "BadRequest"),
    ]
    for method, path, payload, code, reason in cases:
        status, body = await cluster.request(method, path, payload)
        assert (status, body["kind"], body["status"], body["code"], body["reason"]) == (
            code, "Status", "Failure", code, reason), (method, path, body)
    status, body = await cluster.request("PATCH", cluster.ns_path("configmaps", name="a"), {"data": {}},
                                         content_type="text/plain")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


async def test_invalid_status_names_the_field(cluster: Cluster) -> None:
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"), {"metadata": {"name": "Bad_Name"}})
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.name"]


@pytest.mark.parametrize("flag", ["true", "True", "1"])
async def test_watch_flag_spellings(cluster: Cluster, flag: str) -> None:
    await cluster.create("configmaps", {"metadata": {"name": "w"}})
    async with cluster.http.get(cluster.ns_path("configmaps"), params={"watch": flag, "timeoutSeconds": "5"}) as r:
        assert r.status == 200
        events = await read_events(r, 1)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "w"


async def test_method_not_allowed_on_collection_put(cluster: Cluster) -> None:
    status, body = await cluster.request("PUT", cluster.ns_path("configmaps"), {"metadata": {"name": "x"}})
    assert status in (404, 405) and body["kind"] == "Status"
