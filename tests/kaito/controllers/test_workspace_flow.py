"""The workspace and machine controllers end to end over HTTP on the API server emulator (local provider)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kaito.api import constants as c
from kaito.api.crd import NODECLAIM_PRINTER_COLUMNS
from kaito.provisioner import LocalProvider
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK
from kreconcile.metrics import REGISTRY
from kreconcile.testing.apiserver import APIServer
from kreconcile.testing.apiserver.table import find
from tests.kaito.controllers.harness import (
    NODE,
    NODECLAIM,
    SERVICE,
    STATEFULSET,
    WORKSPACE,
    FakeProber,
    condition,
    eventually,
    install_crds,
    mark_statefulset_ready,
    running_operator,
    workspace,
)

EVENT = GVK("events.k8s.io", "v1", "Event")


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with APIServer() as srv:
        yield srv


@pytest.fixture
async def client(server: APIServer) -> AsyncIterator[Client]:
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as cl:
        await install_crds(cl)
        yield cl


async def cond_status(client: Client, name: str, type_: str, namespace: str = "default") -> str | None:
    ws = await client.get(WORKSPACE, name, namespace)
    cond = condition(ws, type_)
    return cond["status"] if cond else None


async def cond_is(client: Client, name: str, type_: str, status: str) -> bool:
    return await cond_status(client, name, type_) == status


async def ws_nodeclaims(client: Client, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    result = await client.list(NODECLAIM, label_selector={c.LABEL_WORKSPACE_NAME: name,
                                                          c.LABEL_WORKSPACE_NAMESPACE: namespace})
    return list(result["items"])


async def test_workspace_provisions_a_node_and_becomes_ready_when_the_endpoint_answers(
    server: APIServer, client: Client
) -> None:
    prober = FakeProber(answer=False)
    async with running_operator(server, client, prober=prober):
        await client.create(workspace("phi"))
        await eventually(lambda: cond_is(client, "phi", c.COND_RESOURCE_READY, "True"))
        claims = await ws_nodeclaims(client, "phi")
        assert len(claims) == 1
        nc = claims[0]
        assert nc["metadata"]["annotations"][c.ANNOTATION_DO_NOT_DISRUPT] == "true"
        type_column = next(col for col in NODECLAIM_PRINTER_COLUMNS if col["name"] == "Type")
        assert find(nc, type_column["jsonPath"]) == ["Standard_NC6s_v3"]  # kubectl get nodeclaim: TYPE
        assert {"type": "Ready", "status": "True"}.items() <= condition(nc, "Ready").items()  # type: ignore[union-attr]
        node = await client.get(NODE, nc["status"]["nodeName"])
        assert node["metadata"]["labels"][c.LABEL_INSTANCE_TYPE] == "Standard_NC6s_v3"
        assert node["status"]["capacity"][c.RESOURCE_GPU] == "1"
        sts = await eventually(lambda: client.get(STATEFULSET, "phi", "default"))
        svc = await client.get(SERVICE, "phi", "default")
        assert svc["spec"]["ports"][0]["port"] == 80
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"][c.RESOURCE_GPU] == "1"
        assert sts["metadata"]["ownerReferences"][0]["kind"] == "Workspace"
        # pods not ready yet: InferenceReady False, WorkspaceSucceeded False
        assert await eventually(lambda: cond_is(client, "phi", c.COND_INFERENCE_READY, "False"))
        await mark_statefulset_ready(client, "phi")
        await eventually(lambda: cond_is(client, "phi", c.COND_INFERENCE_READY, "True"))
        ws = await client.get(WORKSPACE, "phi", "default")
        succeeded = condition(ws, c.COND_WORKSPACE_SUCCEEDED)
        assert succeeded is not None and succeeded["status"] == "False"
        assert succeeded["reason"] == "EndpointNotReady"
        prober.answer = True
        await client.patch(ws, {"metadata": {"annotations": {"poke": "1"}}})  # any event re-probes at once
        await eventually(lambda: cond_is(client, "phi", c.COND_WORKSPACE_SUCCEEDED, "True"))
        ws = await client.get(WORKSPACE, "phi", "default")
        assert ws["status"]["state"] == c.STATE_READY
        assert ws["status"]["workerNodes"] == [nc["status"]["nodeName"]]
        assert c.FINALIZER in ws["metadata"]["finalizers"]
        assert ws["metadata"]["annotations"][c.ANNOTATION_REVISION] == "1"
        assert REGISTRY.get_sample_value("kaito_workspace_count", {"phase": "Ready"}) == 1
        assert REGISTRY.get_sample_value("kaito_workspace_count", {"phase": "Pending"}) == 0
        assert REGISTRY.get_sample_value("kaito_workspace_preset_count",
                                         {"preset_name": "phi-3-mini-4k-instruct"}) == 1

        async def story() -> set[str] | None:
            events = (await client.list(EVENT, "default"))["items"]
            reasons = {e["reason"] for e in events if e["regarding"]["name"] == "phi"}
            wanted = {"NodeClaimCreated", "ResourceReady", "StatefulSetCreated", "WorkspaceReady"}
            return reasons if wanted <= reasons else None

        assert await eventually(story)


async def test_provider_quota_error_is_the_reason_users_see(server: APIServer, client: Client) -> None:
    provider = LocalProvider(client, failures={"Standard_NC6s_v3": "QuotaExceeded"})
    async with running_operator(server, client, provider=provider):
        await client.create(workspace("quota"))
        await eventually(lambda: cond_is(client, "quota", c.COND_RESOURCE_READY, "False"))

        async def quota_reason() -> dict[str, Any] | None:
            ws = await client.get(WORKSPACE, "quota", "default")
            cond = condition(ws, c.COND_RESOURCE_READY)
            return ws if cond and cond["reason"] == c.REASON_NODECLAIM_QUOTA_EXCEEDED else None

        ws = await eventually(quota_reason)
        cond = condition(ws, c.COND_RESOURCE_READY)
        assert cond is not None and "quota" in cond["message"]
        assert "NodeClaim" in cond["message"]
        nodeclaim_cond = condition(ws, c.COND_NODECLAIM_READY)
        assert nodeclaim_cond is not None and nodeclaim_cond["reason"] == c.REASON_NODECLAIM_QUOTA_EXCEEDED
        assert provider.creates == 0
        assert (await client.list(NODE))["items"] == []


async def test_restart_mid_provisioning_launches_no_second_machine(server: APIServer, client: Client) -> None:
    gate = asyncio.Event()

    class SlowClock:
        """The cloud takes until ``gate`` is set to bring the node up."""

        def now(self) -> float:
            return 0.0

        def wall(self) -> float:
            return 0.0

        async def sleep(self, seconds: float) -> None:
            await gate.wait()

    provider = LocalProvider(client, launch_delay=1.0, clock=SlowClock())
    async with running_operator(server, client, provider=provider):
        await client.create(workspace("restart", count=2))

        async def launched() -> bool:
            claims = await ws_nodeclaims(client, "restart")
            return len(claims) == 2 and all(
                (condition(nc, "Launched") or {}).get("status") == "True" for nc in claims)

        await eventually(launched)
    # the operator is gone; the cloud (provider) keeps launching. A new operator process starts.
    async with running_operator(server, client, provider=provider):
        gate.set()
        await eventually(lambda: cond_is(client, "restart", c.COND_RESOURCE_READY, "True"))
        assert len(await ws_nodeclaims(client, "restart")) == 2
        assert provider.creates == 2
        assert len((await client.list(NODE))["items"]) == 2
    # and a third operator with a fresh provider object sees the machines as Nodes: nothing launched again
    fresh = LocalProvider(client)
    async with running_operator(server, client, provider=fresh):
        await client.patch(await client.get(WORKSPACE, "restart", "default"),
                           {"metadata": {"annotations": {"poke": "1"}}})
        await asyncio.sleep(0.5)  # give a wrong implementation time to launch something; nothing should happen
        assert fresh.creates == 0
        assert len(await ws_nodeclaims(client, "restart")) == 2


async def test_deleting_a_workspace_leaves_no_nodeclaims_machines_or_workload(
    server: APIServer, client: Client
) -> None:
    provider = LocalProvider(client)
    async with running_operator(server, client, provider=provider):
        await client.create(workspace("gone", count=2))
        await eventually(lambda: cond_is(client, "gone", c.COND_RESOURCE_READY, "True"))
        await eventually(lambda: client.get(STATEFULSET, "gone", "default"))
        assert len(await provider.list()) == 2
        await client.delete(await client.get(WORKSPACE, "gone", "default"))

        async def workspace_gone() -> bool:
            try:
                await client.get(WORKSPACE, "gone", "default")
                return False
            except NotFound:
                return True

        await eventually(workspace_gone)
        assert await ws_nodeclaims(client, "gone") == []
        assert await provider.list() == []
        assert (await client.list(NODE))["items"] == []
        await eventually(lambda: _absent(client, STATEFULSET, "gone"))
        await eventually(lambda: _absent(client, SERVICE, "gone"))


async def _absent(client: Client, gvk: Any, name: str) -> bool:
    try:
        await client.get(gvk, name, "default")
        return False
    except NotFound:
        return True


async def test_bring_your_own_nodes_are_used_without_nodeclaims(server: APIServer, client: Client) -> None:
    labels = {"apps": "byo", c.LABEL_INSTANCE_TYPE: "Standard_NC6s_v3"}
    node = {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1", "labels": labels},
        "status": {"capacity": {c.RESOURCE_GPU: "1"}, "allocatable": {c.RESOURCE_GPU: "1"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]},
    }
    async with running_operator(server, client, provider=None):
        await client.create(workspace("byo", labels={"apps": "byo"}))
        ws = await eventually(lambda: _with_condition(client, "byo", c.COND_NODES_READY))
        cond = condition(ws, c.COND_NODES_READY)
        assert cond is not None and cond["status"] == "False" and cond["reason"] == "NoMatchingNodes"
        created = await client.create(node)
        if not (created.get("status") or {}).get("conditions"):
            created["status"] = node["status"]
            await client.status().update(created)
        await eventually(lambda: cond_is(client, "byo", c.COND_RESOURCE_READY, "True"))
        assert (await client.list(NODECLAIM))["items"] == []
        ws = await client.get(WORKSPACE, "byo", "default")
        assert ws["status"]["workerNodes"] == ["gpu-1"]


async def _with_condition(client: Client, name: str, type_: str) -> dict[str, Any] | None:
    ws = await client.get(WORKSPACE, name, "default")
    return ws if condition(ws, type_) else None


async def test_two_workspaces_do_not_interfere(server: APIServer, client: Client) -> None:
    provider = LocalProvider(client, failures={"Standard_NC12s_v3": "QuotaExceeded"})
    async with running_operator(server, client, provider=provider):
        await client.create(workspace("ok"))
        await client.create(workspace("blocked", instance_type="Standard_NC12s_v3"))
        await eventually(lambda: cond_is(client, "ok", c.COND_RESOURCE_READY, "True"))
        await eventually(lambda: cond_is(client, "blocked", c.COND_RESOURCE_READY, "False"))
        assert len(await ws_nodeclaims(client, "ok")) == 1
        assert len(await ws_nodeclaims(client, "blocked")) == 1
        await client.delete(await client.get(WORKSPACE, "blocked", "default"))
        await eventually(lambda: _absent(client, WORKSPACE, "blocked"))
        assert await cond_status(client, "ok", c.COND_RESOURCE_READY) == "True"
        assert len(await ws_nodeclaims(client, "ok")) == 1


async def test_injected_conflicts_and_dropped_watches_still_converge(server: APIServer, client: Client) -> None:
    server.faults.inject(409, verb="update", times=3)
    server.faults.inject(500, verb="create", resource="nodeclaims", times=1)
    async with running_operator(server, client):
        await client.create(workspace("flaky", count=2))
        await asyncio.sleep(0.05)
        server.faults.drop_watches()
        server.faults.expire_next_watch()
        await eventually(lambda: cond_is(client, "flaky", c.COND_RESOURCE_READY, "True"), timeout=30)
        await eventually(lambda: client.get(STATEFULSET, "flaky", "default"), timeout=30)
        assert len(await ws_nodeclaims(client, "flaky")) == 2


async def test_a_spec_change_records_a_new_revision_and_rolls_the_workload(
    server: APIServer, client: Client
) -> None:
    async with running_operator(server, client):
        await client.create(workspace("rev"))
        sts = await eventually(lambda: client.get(STATEFULSET, "rev", "default"))
        ws = await client.get(WORKSPACE, "rev", "default")
        ws["inference"]["adapters"] = [{"source": {"name": "a1", "image": "registry.local/a1:1"}, "strength": "0.5"}]
        await client.update(ws)

        async def rolled() -> dict[str, Any] | None:
            new = await client.get(STATEFULSET, "rev", "default")
            return new if new["metadata"]["generation"] > sts["metadata"]["generation"] else None

        new = await eventually(rolled)
        inits = new["spec"]["template"]["spec"].get("initContainers") or []
        assert any("a1" in i["name"] for i in inits)
        ws = await client.get(WORKSPACE, "rev", "default")
        assert ws["metadata"]["annotations"][c.ANNOTATION_REVISION] == "2"

        async def two_revisions() -> bool:
            revisions = await client.list(GVKS.CR, "default")
            return sorted(r["revision"] for r in revisions["items"]) == [1, 2]

        assert await eventually(two_revisions)


class GVKS:
    from kreconcile.gvk import GVK

    CR = GVK("apps", "v1", "ControllerRevision")


async def test_a_nodeclaim_whose_machine_vanished_is_replaced(server: APIServer, client: Client) -> None:
    provider = LocalProvider(client)
    async with running_operator(server, client, provider=provider):
        await client.create(workspace("heal"))
        await eventually(lambda: cond_is(client, "heal", c.COND_RESOURCE_READY, "True"))
        [nc] = await ws_nodeclaims(client, "heal")
        first_uid = nc["metadata"]["uid"]
        await provider.delete(nc["metadata"]["name"])  # the cloud lost the machine
        await client.patch(nc, {"metadata": {"annotations": {"poke": "1"}}})  # its next reconcile notices

        async def replaced() -> bool:
            claims = await ws_nodeclaims(client, "heal")
            return len(claims) == 1 and claims[0]["metadata"]["uid"] != first_uid and (
                condition(claims[0], "Ready") or {}).get("status") == "True"

        await eventually(replaced, timeout=30)
        await eventually(lambda: cond_is(client, "heal", c.COND_RESOURCE_READY, "True"))
        assert provider.creates == 2


async def test_a_not_ready_pod_on_an_old_revision_is_replaced_but_a_ready_one_is_kept(
    server: APIServer, client: Client
) -> None:
    pod_gvk = GVK("", "v1", "Pod")

    def pod(name: str, revision: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default",
                             "labels": {c.LABEL_WORKSPACE_NAME: "roll", "controller-revision-hash": revision}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}

    async with running_operator(server, client):
        await client.create(workspace("roll", count=2))
        sts = await eventually(lambda: client.get(STATEFULSET, "roll", "default"))
        for name, revision, ready in (("roll-0", "roll-old", True), ("roll-1", "roll-old", False)):
            created = await client.create(pod(name, revision))
            created["status"] = {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}
            await client.status().update(created)
        # a rollout is under way: the StatefulSet controller reports a newer update revision
        sts["status"] = {"observedGeneration": sts["metadata"]["generation"], "replicas": 2,
                         "currentRevision": "roll-old", "updateRevision": "roll-new"}
        await client.status().update(sts)

        async def stuck_pod_gone() -> bool:
            try:
                await client.get(pod_gvk, "roll-1", "default")
            except NotFound:
                return True
            return False

        assert await eventually(stuck_pod_gone)
        assert (await client.get(pod_gvk, "roll-0", "default"))["metadata"]["name"] == "roll-0"  # Ready: kept

        async def replaced_event() -> bool:
            events = (await client.list(EVENT, "default"))["items"]
            return any(e["reason"] == "StalePodReplaced" and "roll-1" in e["note"] for e in events)

        assert await eventually(replaced_event)
