"""Rule 7: label selectors (=, ==, !=, in, notin, exists, !exists) and field selectors."""

from __future__ import annotations

import pytest

from .conftest import Cluster

LABELS = {"a": {"env": "prod", "tier": "web"}, "b": {"env": "dev", "tier": "web"}, "c": {"env": "prod"},
          "d": {}}


@pytest.mark.parametrize(("selector", "expected"), [
    ("env=prod", ["a", "c"]), ("env==prod", ["a", "c"]), ("env!=prod", ["b", "d"]),
    ("env in (dev,prod),tier", ["a", "b"]), ("env notin (prod)", ["b", "d"]), ("tier", ["a", "b"]),
    ("!tier", ["c", "d"]), ("env=prod,!tier", ["c"]),
])
async def test_label_selectors(cluster: Cluster, selector: str, expected: list[str]) -> None:
    for name, labels in LABELS.items():
        await cluster.create("configmaps", {"metadata": {"name": name, "labels": labels}})
    status, body = await cluster.request("GET", cluster.ns_path("configmaps"), params={"labelSelector": selector})
    assert status == 200
    assert sorted(i["metadata"]["name"] for i in body["items"]) == expected


async def test_field_selectors(cluster: Cluster) -> None:
    for name in ("a", "b"):
        await cluster.create("pods", {"metadata": {"name": name}, "spec": {"containers": [{"name": "c",
                                                                                          "image": "x"}]}})
    await cluster.request("POST", cluster.ns_path("pods", name="a", sub="binding"),
                          {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"},
                           "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}})
    cases = {"metadata.name=b": ["b"], "metadata.name!=b": ["a"], f"metadata.namespace={cluster.namespace}":
             ["a", "b"], "spec.nodeName=node-1": ["a"], "spec.nodeName=": ["b"], "status.phase=Pending": ["a", "b"]}
    for selector, expected in cases.items():
        status, body = await cluster.request("GET", cluster.ns_path("pods"), params={"fieldSelector": selector})
        assert status == 200, body
        assert sorted(i["metadata"]["name"] for i in body["items"]) == expected, selector
    status, body = await cluster.request("GET", cluster.ns_path("pods"), params={"fieldSelector": "spec.bogus=1"})
    assert (status, body["reason"]) == (400, "BadRequest")


async def test_delete_collection_honours_the_selector(cluster: Cluster) -> None:
    for name, labels in LABELS.items():
        await cluster.create("configmaps", {"metadata": {"name": name, "labels": labels}})
    status, _ = await cluster.request("DELETE", cluster.ns_path("configmaps"), params={"labelSelector": "env=prod"})
    assert status == 200
    _, left = await cluster.request("GET", cluster.ns_path("configmaps"))
    assert sorted(i["metadata"]["name"] for i in left["items"] if i["metadata"]["name"] in LABELS) == ["b", "d"]
