"""Rule 5: the status subresource splits writes between the main resource and /status."""

from __future__ import annotations

from .conftest import WIDGET_API, Cluster


async def test_main_and_status_writes_are_separated(cluster: Cluster) -> None:
    await cluster.ensure_widget_crd()
    created = await cluster.create("widgets", {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": "w"},
                                               "spec": {"size": 2}, "status": {"replicas": 7}}, WIDGET_API)
    assert "status" not in created and created["metadata"]["generation"] == 1
    main = cluster.ns_path("widgets", WIDGET_API, "w")
    status, after_status = await cluster.request("PUT", f"{main}/status", {
        **created, "spec": {"size": 99}, "status": {"replicas": 1}})
    assert status == 200
    assert after_status["spec"]["size"] == 2 and after_status["status"] == {"replicas": 1}
    assert after_status["metadata"]["generation"] == 1
    status, after_main = await cluster.request("PUT", main, {
        **after_status, "spec": {"size": 3}, "status": {"replicas": 42}})
    assert status == 200
    assert after_main["spec"]["size"] == 3 and after_main["status"] == {"replicas": 1}
    assert after_main["metadata"]["generation"] == 2
    status, patched = await cluster.request("PATCH", f"{main}/status", {"status": {"replicas": 5}},
                                            "application/merge-patch+json")
    assert patched["status"] == {"replicas": 5} and patched["metadata"]["generation"] == 2


async def test_builtin_status_subresource(cluster: Cluster) -> None:
    pod = await cluster.create("pods", {"metadata": {"name": "p"},
                                        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                                        "status": {"phase": "Running"}})
    assert pod["status"]["phase"] == "Pending"
    status, body = await cluster.request("PATCH", cluster.ns_path("pods", name="p", sub="status"),
                                         {"status": {"phase": "Running"}}, "application/merge-patch+json")
    assert status == 200 and body["status"]["phase"] == "Running"
    status, body = await cluster.request("PATCH", cluster.ns_path("pods", name="p"),
                                         {"status": {"phase": "Failed"}}, "application/merge-patch+json")
    assert status == 200 and body["status"]["phase"] == "Running"


async def test_a_node_keeps_the_status_it_is_registered_with(cluster: Cluster) -> None:
    """A kubelet registers its Node with capacity and conditions in one create; unlike pods and custom resources,
    the node strategy keeps that status."""
    name = f"conformance-{cluster.namespace}"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"capacity": {"nvidia.com/gpu": "2", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}]}}
    status, created = await cluster.request("POST", "/api/v1/nodes", node)
    try:
        assert status == 201, created
        assert created["status"]["capacity"]["nvidia.com/gpu"] == "2"
        assert created["status"]["conditions"][0]["type"] == "Ready"
    finally:
        await cluster.request("DELETE", f"/api/v1/nodes/{name}")
