"""LocalCluster end to end: kubectl against the emulator, real local processes, HTTP through Services."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kreconcile.clock import FakeClock
from kreconcile.testing.controllers._common import DEPLOYMENT, JOB, POD, STATEFULSET
from kreconcile.testing.kubelet import live_process_groups
from kreconcile.testing.kubelet.nodeinfo import KUBELET_VERSION
from kreconcile.testing.localcluster import LocalCluster

from .conftest import apply, deployment, kubectl, logs, service, wait_for

pytestmark = pytest.mark.slow


def _http_get(host: str, port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


async def _pods(cluster: LocalCluster, selector: str | None = None) -> list[dict[str, Any]]:
    assert cluster.client is not None
    return list((await cluster.client.list(POD, "default", label_selector=selector or None))["items"])


def _pid(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["containerID"].split("//")[1])


async def test_deployment_becomes_ready_and_is_reachable_through_its_service(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    await apply(cluster, deployment("web", replicas=2), service("web"))
    await kubectl(cluster, "wait", "--for=condition=Available", "deployment/web", "--timeout=60s")
    host, port = await cluster.wait_service_address("default", "web", 80)
    answers = {await asyncio.to_thread(_http_get, host, port) for _ in range(6)}
    pod_names = {p["metadata"]["name"] for p in await _pods(cluster, "app=web")}
    assert answers == {f"hello from {name}\n" for name in pod_names}  # round-robin reaches both replicas
    status = json.loads(await kubectl(cluster, "get", "deployment", "web", "-o", "json"))["status"]
    assert status["readyReplicas"] == 2 and status["availableReplicas"] == 2 and status["updatedReplicas"] == 2
    if cluster.backend == "emulator":  # a real kube-apiserver refuses loopback Endpoints addresses
        endpoints = json.loads(await kubectl(cluster, "get", "endpoints", "web", "-o", "json"))
        assert len(endpoints["subsets"][0]["addresses"]) == 2
        assert endpoints["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    pod = sorted(pod_names)[0]
    assert "listening on" in await logs(cluster, pod)


async def test_template_change_replaces_pods(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    await apply(cluster, deployment("roll", replicas=1))
    first = await wait_for(lambda: _ready_names(cluster, "app=roll"))
    changed = deployment("roll", replicas=1)
    changed["spec"]["template"]["metadata"]["labels"]["version"] = "2"
    await apply(cluster, changed)
    out = await kubectl(cluster, "rollout", "status", "deployment/roll", "--timeout=60s")
    assert "successfully rolled out" in out
    second = await wait_for(lambda: _only_new_ready(cluster, "app=roll", first), timeout=60)
    assert second.isdisjoint(first)


async def _ready_names(cluster: LocalCluster, selector: str) -> set[str]:
    return {p["metadata"]["name"] for p in await _pods(cluster, selector)
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}


async def _only_new_ready(cluster: LocalCluster, selector: str, old: set[str]) -> set[str] | None:
    pods = await _pods(cluster, selector)
    names = {p["metadata"]["name"] for p in pods}
    ready = await _ready_names(cluster, selector)
    return ready if ready and names.isdisjoint(old) else None


async def test_statefulset_scales_one_to_three_to_one_in_order(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "db", "image": "busybox",
                                                  "command": ["sh", "-c", "echo $HOSTNAME; exec sleep 300"],
                                                  "readinessProbe": {"exec": {"command": ["true"]},
                                                                     "periodSeconds": 1}}],
                                  "terminationGracePeriodSeconds": 1}},
        },
    }
    await apply(cluster, sts)
    seen: list[str] = []
    gone: list[str] = []
    current: set[str] = set()

    async def track(target: set[str]) -> bool:
        names = {p["metadata"]["name"] for p in await _pods(cluster, "app=db")}
        seen.extend(sorted(names - current))
        gone.extend(sorted(current - names))
        current.clear()
        current.update(names)
        ready = await _ready_names(cluster, "app=db")
        return names == target and ready == target

    await wait_for(lambda: track({"db-0"}))
    await kubectl(cluster, "scale", "statefulset", "db", "--replicas=3")
    await wait_for(lambda: track({"db-0", "db-1", "db-2"}), timeout=60, interval=0.05)
    assert seen == ["db-0", "db-1", "db-2"]
    pod = next(p for p in await _pods(cluster, "app=db") if p["metadata"]["name"] == "db-2")
    assert pod["spec"]["hostname"] == "db-2" and pod["spec"]["subdomain"] == "db"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-2"
    assert cluster.read_log("default", "db-2") == b"db-2\n"
    # the scale-down order comes from the watch's DELETED events: polling can see two pods vanish between polls
    assert cluster.client is not None
    listed = await cluster.client.list(POD, "default", label_selector="app=db")
    deleted: list[str] = []

    async def record_deletions() -> None:
        async for type_, obj in cluster.client.watch(  # type: ignore[union-attr]
                POD, "default", label_selector="app=db", resource_version=listed["metadata"]["resourceVersion"]):
            if type_ == "DELETED":
                deleted.append(obj["metadata"]["name"])

    watcher = asyncio.create_task(record_deletions())
    await kubectl(cluster, "scale", "statefulset", "db", "--replicas=1")
    await wait_for(lambda: track({"db-0"}), timeout=60, interval=0.05)
    await wait_for(lambda: _true(len(deleted) == 2), timeout=10)
    watcher.cancel()
    assert sorted(gone) == ["db-1", "db-2"]
    assert deleted == ["db-2", "db-1"]
    assert cluster.client is not None

    async def status_counts_one() -> bool:
        # the StatefulSet controller writes its status after it observes the deletions: poll, don't race it
        status = (await cluster.client.get(STATEFULSET, "db", "default"))["status"]  # type: ignore[union-attr]
        return bool(status.get("replicas") == 1 and status.get("readyReplicas") == 1)

    await wait_for(status_counts_one, timeout=30)


async def test_job_that_fails_twice_then_succeeds_reports_the_counts(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    script = "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n; echo try $n; [ $n -ge 3 ]"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "flaky", "namespace": "default"},
        "spec": {
            "backoffLimit": 4,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "try", "image": "busybox", "command": ["sh", "-c", script],
                                "volumeMounts": [{"name": "state", "mountPath": "/state"}]}],
                "volumes": [{"name": "state", "hostPath": {"path": "/var/flaky"}}],
            }},
        },
    }
    await apply(cluster, job)
    await kubectl(cluster, "wait", "--for=condition=Complete", "job/flaky", "--timeout=60s")
    assert cluster.client is not None
    status = (await cluster.client.get(JOB, "flaky", "default"))["status"]
    assert status["succeeded"] == 1
    assert status["failed"] == 2
    assert status.get("active", 0) == 0
    assert "completionTime" in status
    phases = sorted(p["status"]["phase"] for p in await _pods(cluster, "job-name=flaky"))
    assert phases == ["Failed", "Failed", "Succeeded"]


async def test_job_over_its_backoff_limit_fails(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "doomed", "namespace": "default"},
        "spec": {"backoffLimit": 1, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["false"]}]}}},
    }
    await apply(cluster, job)
    await kubectl(cluster, "wait", "--for=condition=Failed", "job/doomed", "--timeout=60s")
    assert cluster.client is not None
    status = (await cluster.client.get(JOB, "doomed", "default"))["status"]
    assert status["failed"] == 2
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"


async def test_gpu_pod_stays_pending_with_the_real_reason_until_a_node_has_capacity(cluster: LocalCluster) -> None:
    await cluster.add_node("cpu-1")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainer", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "300"],
                                 "resources": {"limits": {"nvidia.com/gpu": "2"}}}],
                 "terminationGracePeriodSeconds": 1},
    }
    await apply(cluster, pod)

    async def unschedulable() -> dict[str, Any] | None:
        got = json.loads(await kubectl(cluster, "get", "pod", "trainer", "-o", "json"))
        cond = next((c for c in got["status"].get("conditions", []) if c["type"] == "PodScheduled"), None)
        return cond if cond and cond["status"] == "False" else None

    cond = await wait_for(unschedulable)
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    await cluster.add_node("gpu-1", capacity={"nvidia.com/gpu": "1"})
    cond = await wait_for(lambda: _message_is(cluster, "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."))
    await cluster.add_node("gpu-2", capacity={"nvidia.com/gpu": "2"})

    async def running_on() -> str | None:
        got = (await _pods(cluster))
        p = next(x for x in got if x["metadata"]["name"] == "trainer")
        return p["spec"].get("nodeName") if p["status"].get("phase") == "Running" else None

    assert await wait_for(running_on) == "gpu-2"


async def _message_is(cluster: LocalCluster, message: str) -> bool:
    pods = await _pods(cluster)
    p = next(x for x in pods if x["metadata"]["name"] == "trainer")
    return any(c.get("message") == message for c in p["status"].get("conditions", []))


async def test_deleting_the_owner_removes_pods_and_kills_processes(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    await apply(cluster, deployment("doomed", replicas=2))
    await kubectl(cluster, "wait", "--for=condition=Available", "deployment/doomed", "--timeout=60s")
    pods = await _pods(cluster, "app=doomed")
    pids = [_pid(p) for p in pods]
    assert all(_alive(pid) for pid in pids)
    await kubectl(cluster, "delete", "deployment", "doomed", "--wait=false")
    await wait_for(lambda: _no_pods(cluster, "app=doomed"), timeout=60)
    await wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=30)
    await wait_for(lambda: not set(pids) & live_process_groups())  # reaped and forgotten by the kubelet
    assert cluster.client is not None
    assert not [d for d in (await cluster.client.list(DEPLOYMENT, "default"))["items"]]


async def _no_pods(cluster: LocalCluster, selector: str) -> bool:
    return not await _pods(cluster, selector)


async def test_crashing_container_goes_to_crash_loop_backoff_with_growing_backoff(tmp_path: Path, backend: Any) -> None:
    clock = FakeClock()
    async with LocalCluster(backend, data_dir=tmp_path / "c", kubelet_clock=clock) as cluster:
        await cluster.add_node("node-1")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "crasher", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo oops; exit 2"]}]},
        }
        await apply(cluster, pod)
        messages = []
        for expected in ("10s", "20s", "40s"):
            status = await wait_for(lambda e=expected: _backoff_status(cluster, e))
            messages.append(status["state"]["waiting"]["message"])
            assert status["lastState"]["terminated"]["exitCode"] == 2
            clock.advance(clock.next_deadline() - clock.now())  # type: ignore[operator]
        assert [m.split()[1] for m in messages] == ["10s", "20s", "40s"]
        got = json.loads(await kubectl(cluster, "get", "pod", "crasher", "-o", "json"))
        assert got["status"]["phase"] == "Running"
        assert got["status"]["containerStatuses"][0]["restartCount"] >= 3
        assert cluster.read_log("default", "crasher", previous=True) == b"oops\n"
        assert await logs(cluster, "crasher") in ("", "oops\n")  # the last run (empty if it just restarted)


async def _backoff_status(cluster: LocalCluster, delay: str) -> dict[str, Any] | None:
    pods = await _pods(cluster)
    p = next((x for x in pods if x["metadata"]["name"] == "crasher"), None)
    statuses = (p or {}).get("status", {}).get("containerStatuses") or []
    if not statuses:
        return None
    waiting = statuses[0]["state"].get("waiting") or {}
    if waiting.get("reason") == "CrashLoopBackOff" and f"back-off {delay} " in waiting.get("message", ""):
        return dict(statuses[0])
    return None


async def test_stopping_the_cluster_leaves_no_process(tmp_path: Path, backend: Any) -> None:
    async with LocalCluster(backend, data_dir=tmp_path / "c") as cluster:
        await cluster.add_node("node-1")
        sleeper = deployment("sleepy", replicas=2)
        sleeper["spec"]["template"]["spec"]["containers"] = [
            {"name": "s", "image": "busybox", "command": ["sh", "-c", "trap '' TERM; sleep 300 & wait"]}
        ]
        await apply(cluster, sleeper)
        pods = await wait_for(lambda: _running(cluster, "app=sleepy", 2))
        pids = [_pid(p) for p in pods]
    assert not any(_alive(pid) for pid in pids)
    assert not set(pids) & live_process_groups()


async def _running(cluster: LocalCluster, selector: str, count: int) -> list[dict[str, Any]] | None:
    pods = [p for p in await _pods(cluster, selector) if p["status"].get("phase") == "Running"
            and p["status"].get("containerStatuses")]
    return pods if len(pods) == count else None


async def test_a_node_created_by_a_provisioner_is_served_and_reported_ready(cluster: LocalCluster) -> None:
    assert cluster.client is not None
    await cluster.client.create({"apiVersion": "v1", "kind": "Node",
                                 "metadata": {"name": "provisioned", "labels": {"nvidia.com/gpu.count": "2"}}})

    async def ready() -> dict[str, Any] | None:
        node = json.loads(await kubectl(cluster, "get", "node", "provisioned", "-o", "json"))
        conditions = node["status"].get("conditions", [])
        return node if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None

    node = await wait_for(ready)
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    lease = json.loads(await kubectl(cluster, "get", "lease", "provisioned", "-n", "kube-node-lease", "-o", "json"))
    assert lease["spec"]["holderIdentity"] == "provisioned"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["name"] == "provisioned"


async def test_a_node_registered_ready_without_node_info_gets_the_kubelets_version(cluster: LocalCluster) -> None:
    assert cluster.client is not None
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "local machine is ready"}
    await cluster.client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "launched"},
                                 "status": {"capacity": {"cpu": "4"}, "conditions": [ready]}})

    async def version_column() -> str | None:
        table = await kubectl(cluster, "get", "node", "launched", "-o", "wide")
        header, row = table.splitlines()[:2]
        cells = dict(zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", row), strict=False))
        return table if cells.get("VERSION") == KUBELET_VERSION else None

    table = await wait_for(version_column)
    assert "process://kreconcile" in table  # CONTAINER-RUNTIME
    node = json.loads(await kubectl(cluster, "get", "node", "launched", "-o", "json"))
    info = node["status"]["nodeInfo"]
    assert info["operatingSystem"] == "linux" and info["architecture"] in ("amd64", "arm64")


async def test_repeated_failed_mounts_are_one_event_with_a_growing_count(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mnt", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "30"],
                                    "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
                    "volumes": [{"name": "cfg", "configMap": {"name": "missing"}}]}}
    await apply(cluster, pod)

    async def repeated() -> list[dict[str, Any]] | None:
        events = json.loads(await kubectl(cluster, "get", "events", "--field-selector", "reason=FailedMount",
                                          "-o", "json"))["items"]
        # core/v1's view of an events.k8s.io/v1 Event: kube-apiserver fills `count` only from deprecatedCount and
        # carries the repeats in `series.count`; the emulator fills both
        count = (events[0].get("series") or {}).get("count") or events[0].get("count", 0) if events else 0
        return events if count >= 3 else None

    events = await wait_for(repeated)  # mount attempts at 0, 0.5 and 1.5 s
    assert len(events) == 1 and 'configmap "missing" not found' in events[0]["message"]
    table = await kubectl(cluster, "get", "events", "--field-selector", "reason=FailedMount")
    assert table.split()[:6] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"] and "pod/mnt" in table


async def test_a_persisted_cluster_resumes_its_workloads_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "persisted"
    async with LocalCluster(data_dir=data, persist=True) as cluster:
        await cluster.add_node("node-1")
        await apply(cluster, deployment("keep", replicas=1), service("keep"))
        await kubectl(cluster, "wait", "--for=condition=Available", "deployment/keep", "--timeout=60s")
        before = {p["metadata"]["name"] for p in await _pods(cluster, "app=keep")}
    async with LocalCluster(data_dir=data, persist=True) as cluster:
        host, port = await cluster.wait_service_address("default", "keep", 80)
        answer = await asyncio.to_thread(_http_get, host, port)
        assert answer.removeprefix("hello from ").strip() in before


async def test_deleting_a_node_stops_its_pods_and_removes_them(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    await apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lonely", "namespace": "default"},
                          "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}],
                                   "terminationGracePeriodSeconds": 1}})
    pods = await wait_for(lambda: _running(cluster, "", 1))
    pid = _pid(pods[0])
    await kubectl(cluster, "delete", "node", "node-1")
    await wait_for(lambda: _no_pods(cluster, ""), timeout=60)
    await wait_for(lambda: not _alive(pid))


async def test_load_balancer_service_reports_its_loopback_ingress(cluster: LocalCluster) -> None:
    lb = service("public")
    lb["spec"]["type"] = "LoadBalancer"
    await apply(cluster, lb)

    async def ingress() -> list[dict[str, Any]] | None:
        got = json.loads(await kubectl(cluster, "get", "service", "public", "-o", "json"))
        return got.get("status", {}).get("loadBalancer", {}).get("ingress")

    assert await wait_for(ingress) == [{"ip": "127.0.0.1"}]
    assert cluster.service_address("default", "public", 80)[0] == "127.0.0.1"


async def test_indexed_job_runs_each_completion_index_once(tmp_path: Path) -> None:
    # Emulator only: Kubernetes 1.20 (our real backend) predates completionMode (alpha in 1.21).
    async with LocalCluster(data_dir=tmp_path / "c") as cluster:
        await _run_indexed_job(cluster)


async def _run_indexed_job(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "shards", "namespace": "default"},
        "spec": {"completions": 3, "parallelism": 2, "completionMode": "Indexed", "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox",
                            "command": ["sh", "-c", "echo $HOSTNAME > /out/shard-$JOB_COMPLETION_INDEX"],
                            "volumeMounts": [{"name": "out", "mountPath": "/out"}]}],
            "volumes": [{"name": "out", "hostPath": {"path": "/var/shards"}}],
        }}},
    }
    await apply(cluster, job)
    await kubectl(cluster, "wait", "--for=condition=Complete", "job/shards", "--timeout=60s")
    assert cluster.client is not None
    status = (await cluster.client.get(JOB, "shards", "default"))["status"]
    assert status["succeeded"] == 3
    assert status["completedIndexes"] == "0-2"
    out = cluster.data_dir / "nodes" / "node-1" / "hostpath" / "var" / "shards"
    assert sorted(p.name for p in out.iterdir()) == ["shard-0", "shard-1", "shard-2"]
    assert (out / "shard-1").read_text() == "shards-1\n"


async def test_paused_deployment_keeps_its_pods_until_resumed(cluster: LocalCluster) -> None:
    await cluster.add_node("node-1")
    await apply(cluster, deployment("hold", replicas=1))
    first = await wait_for(lambda: _ready_names(cluster, "app=hold"))
    await kubectl(cluster, "rollout", "pause", "deployment/hold")

    async def paused() -> bool:
        got = json.loads(await kubectl(cluster, "get", "deployment", "hold", "-o", "json"))
        return any(c.get("reason") == "DeploymentPaused" for c in got["status"].get("conditions", []))

    await wait_for(paused)
    await kubectl(cluster, "set", "env", "deployment/hold", "COLOR=blue")

    async def observed() -> bool:  # the controller has seen the new template (and done nothing with it)
        got = json.loads(await kubectl(cluster, "get", "deployment", "hold", "-o", "json"))
        return bool(got["status"].get("observedGeneration") == got["metadata"]["generation"])

    await wait_for(observed)
    assert {p["metadata"]["name"] for p in await _pods(cluster, "app=hold")} == first
    await kubectl(cluster, "rollout", "resume", "deployment/hold")
    await kubectl(cluster, "rollout", "status", "deployment/hold", "--timeout=60s")
    await wait_for(lambda: _only_new_ready(cluster, "app=hold", first), timeout=60)


async def _true(value: bool) -> bool:
    return value
