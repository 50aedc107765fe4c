"""Rule 10: the built-in kinds our controllers use, with their subresources."""

from __future__ import annotations

import json

import pytest

from .conftest import Cluster
from .test_rule02_metadata import DEPLOYMENT

NS = "<the test namespace>"
POD_SPEC = {"containers": [{"name": "c", "image": "busybox"}]}


@pytest.mark.parametrize(("group_version", "resource", "body"), [
    ("v1", "services", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}),
    ("v1", "configmaps", {"metadata": {"name": "c"}, "data": {"k": "v"}}),
    ("v1", "secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
    ("v1", "events", {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
                      "reason": "Test", "message": "m", "type": "Normal"}),
    ("events.k8s.io/v1", "events", {"metadata": {"name": "e2"}, "eventTime": "2026-01-01T00:00:00.000000Z",
                                    "reportingController": "test", "reportingInstance": "i", "action": "A",
                                    "reason": "R", "type": "Normal",
                                    "regarding": {"kind": "Pod", "name": "p", "namespace": NS}}),
    ("coordination.k8s.io/v1", "leases", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me",
                                                                              "leaseDurationSeconds": 15}}),
    ("apps/v1", "controllerrevisions", {"metadata": {"name": "r"}, "revision": 1, "data": {"x": 1}}),
    ("batch/v1", "jobs", {"metadata": {"name": "j"}, "spec": {"template": {"spec": {**POD_SPEC,
                                                                                     "restartPolicy": "Never"}}}}),
    ("apps/v1", "statefulsets", {"metadata": {"name": "s"}, "spec": {
        "serviceName": "s", "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": POD_SPEC}}}),
])
async def test_namespaced_builtin_round_trip(cluster: Cluster, group_version: str, resource: str, body: dict) -> None:
    body = json.loads(json.dumps(body).replace(NS, cluster.namespace))
    created = await cluster.create(resource, body, group_version)
    status, got = await cluster.request("GET", cluster.ns_path(resource, group_version, created["metadata"]["name"]))
    assert status == 200 and got["metadata"]["uid"] == created["metadata"]["uid"]


async def test_service_defaults_and_secret_string_data(cluster: Cluster) -> None:
    svc = await cluster.create("services", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["clusterIP"]
    assert svc["spec"]["ports"][0]["protocol"] == "TCP" and svc["spec"]["ports"][0]["targetPort"] == 80
    secret = await cluster.create("secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert secret["data"] == {"k": "dg=="} and "stringData" not in secret and secret["type"] == "Opaque"


async def test_job_gets_a_generated_selector(cluster: Cluster) -> None:
    job = await cluster.create("jobs", {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        **POD_SPEC, "restartPolicy": "Never"}}}}, "batch/v1")
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {"controller-uid": uid} or \
        job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    assert job["spec"]["backoffLimit"] == 6
    status, body = await cluster.request("PATCH", cluster.ns_path("jobs", "batch/v1", "j", "status"),
                                         {"status": {"active": 1}}, "application/merge-patch+json")
    assert status == 200 and body["status"]["active"] == 1


async def test_nodes_and_node_status(cluster: Cluster) -> None:
    name = f"{cluster.namespace}-node"
    status, node = await cluster.request("POST", "/api/v1/nodes", {"metadata": {"name": name}})
    assert status == 201 and "namespace" not in node["metadata"]
    cluster.cleanup.append(lambda: cluster.request("DELETE", f"/api/v1/nodes/{name}"))
    status, body = await cluster.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": {
        "capacity": {"nvidia.com/gpu": "1"}, "conditions": [{"type": "Ready", "status": "True"}]}},
        "application/merge-patch+json")
    assert status == 200 and body["status"]["capacity"]["nvidia.com/gpu"] == "1"


async def test_pod_binding_sets_the_node_once(cluster: Cluster) -> None:
    await cluster.create("pods", {"metadata": {"name": "p"}, "spec": POD_SPEC})
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    status, _ = await cluster.request("POST", cluster.ns_path("pods", name="p", sub="binding"), binding)
    assert status == 201
    _, pod = await cluster.request("GET", cluster.ns_path("pods", name="p"))
    assert pod["spec"]["nodeName"] == "n1"
    status, body = await cluster.request("POST", cluster.ns_path("pods", name="p", sub="binding"), binding)
    assert (status, body["reason"]) == (409, "Conflict")


async def test_pod_log_rules_without_a_kubelet(cluster: Cluster) -> None:
    await cluster.create("pods", {"metadata": {"name": "p"}, "spec": POD_SPEC})
    status, body = await cluster.request("GET", cluster.ns_path("pods", name="p", sub="log"))
    assert (status, body) == (204, "")  # not scheduled yet: no log location, 204 No Content
    two = {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}
    await cluster.create("pods", {"metadata": {"name": "two"}, "spec": two})
    status, body = await cluster.request("GET", cluster.ns_path("pods", name="two", sub="log"))
    assert (status, body["reason"]) == (400, "BadRequest") and "choose one of" in body["message"]
    status, body = await cluster.request("GET", cluster.ns_path("pods", name="two", sub="log"),
                                         params={"container": "zz"})
    assert (status, body["reason"]) == (400, "BadRequest")


async def test_deployment_scale_and_status(cluster: Cluster) -> None:
    await cluster.create("deployments", DEPLOYMENT, "apps/v1")
    _, scale = await cluster.request("GET", cluster.ns_path("deployments", "apps/v1", "d", "scale"))
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    status, scale = await cluster.request("PATCH", cluster.ns_path("deployments", "apps/v1", "d", "scale"),
                                          {"spec": {"replicas": 4}}, "application/merge-patch+json")
    assert status == 200 and scale["spec"]["replicas"] == 4
    status, dep = await cluster.request("PATCH", cluster.ns_path("deployments", "apps/v1", "d", "status"),
                                        {"status": {"replicas": 4, "readyReplicas": 2}},
                                        "application/merge-patch+json")
    assert status == 200 and dep["spec"]["replicas"] == 4 and dep["status"]["readyReplicas"] == 2
    status, body = await cluster.request("PATCH", cluster.ns_path("deployments", "apps/v1", "d", "status"),
                                         {"status": {"readyReplicas": 9}}, "application/merge-patch+json")
    assert (status, body["details"]["causes"][0]["field"]) == (422, "status.readyReplicas")
    assert dep["metadata"]["generation"] == 2


async def test_events_k8s_io_events_are_core_events_too(cluster: Cluster) -> None:
    """The events.k8s.io group is a view of core Events: what a controller records through events.k8s.io/v1 is
    what ``kubectl describe`` (core/v1, field selector on involvedObject) shows."""
    cm = await cluster.create("configmaps", {"metadata": {"name": "storied"}})
    event = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "storied.1", "namespace": cluster.namespace},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "conformance.kreconcile.dev/ctl",
        "reportingInstance": "ctl-0", "action": "Reconcile", "reason": "StoryTold", "type": "Normal",
        "note": "the configmap was reconciled",
        "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": cluster.namespace, "name": "storied",
                      "uid": cm["metadata"]["uid"]},
    }
    created = await cluster.create("events", event, "events.k8s.io/v1")
    assert created["note"] == "the configmap was reconciled"
    selector = f"involvedObject.name=storied,involvedObject.namespace={cluster.namespace},involvedObject.kind=ConfigMap"
    status, core = await cluster.request("GET", cluster.ns_path("events"), params={"fieldSelector": selector})
    assert status == 200, core
    (item,) = [e for e in core["items"] if e["reason"] == "StoryTold"]
    assert item["message"] == "the configmap was reconciled" and item["type"] == "Normal"
    assert item["involvedObject"]["uid"] == cm["metadata"]["uid"]
    described = await cluster.kubectl("describe", "configmap", "storied")
    assert "StoryTold" in described and "the configmap was reconciled" in described
