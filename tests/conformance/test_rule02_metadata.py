"""Rule 2: server-set metadata (global resourceVersion, uid, creationTimestamp, generation, generateName)."""

from __future__ import annotations

import re

from .conftest import Cluster

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
             "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c",
                                                                                        "image": "busybox"}]}}},
}


async def test_server_sets_uid_timestamp_and_a_global_increasing_version(cluster: Cluster) -> None:
    versions = []
    uids = set()
    for i in range(3):
        cm = await cluster.create("configmaps", {"metadata": {"name": f"c{i}", "uid": "client-set"}})
        secret = await cluster.create("secrets", {"metadata": {"name": f"s{i}"}})
        for obj in (cm, secret):
            versions.append(int(obj["metadata"]["resourceVersion"]))
            uids.add(obj["metadata"]["uid"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", obj["metadata"]["creationTimestamp"])
    assert versions == sorted(versions) and len(set(versions)) == 6
    assert len(uids) == 6 and "client-set" not in uids


async def test_generation_counts_spec_changes_only(cluster: Cluster) -> None:
    d = await cluster.create("deployments", DEPLOYMENT, "apps/v1")
    assert d["metadata"]["generation"] == 1
    path = cluster.ns_path("deployments", "apps/v1", "d")
    _, labeled = await cluster.request("PATCH", path, {"metadata": {"labels": {"x": "y"}}},
                                       "application/merge-patch+json")
    assert labeled["metadata"]["generation"] == 1
    _, scaled = await cluster.request("PATCH", path, {"spec": {"replicas": 2}}, "application/merge-patch+json")
    assert scaled["metadata"]["generation"] == 2


async def test_generate_name_appends_a_random_suffix(cluster: Cluster) -> None:
    names = set()
    for _ in range(3):
        obj = await cluster.create("configmaps", {"metadata": {"generateName": "gen-"}})
        assert re.fullmatch(r"gen-[a-z0-9]{5}", obj["metadata"]["name"])
        names.add(obj["metadata"]["name"])
    assert len(names) == 3


async def test_namespace_comes_from_the_url(cluster: Cluster) -> None:
    obj = await cluster.create("configmaps", {"metadata": {"name": "n"}})
    assert obj["metadata"]["namespace"] == cluster.namespace
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"),
                                         {"metadata": {"name": "m", "namespace": "default"}})
    assert (status, body["reason"]) == (400, "BadRequest")


async def test_resource_version_on_create_is_refused(cluster: Cluster) -> None:
    status, body = await cluster.request("POST", cluster.ns_path("configmaps"),
                                         {"metadata": {"name": "rv", "resourceVersion": "5"}})
    assert (status, body["message"]) == (500, "resourceVersion should not be set on objects to be created")
