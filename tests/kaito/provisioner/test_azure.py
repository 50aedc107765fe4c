"""The azure provider against a fake ARM server (real agentPools REST shapes and Azure-AsyncOperation polling),
alone and inside the operator with the API server emulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from kaito.api import constants as c
from kaito.provisioner import (
    InstanceTypeUnavailableError,
    MachineNotFoundError,
    ProviderError,
    QuotaExceededError,
    ThrottledError,
)
from kaito.provisioner.azure import LABEL_AGENTPOOL, TAG_NODECLAIM, AzureProvider, pool_name
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import NotFound
from kreconcile.testing.apiserver import APIServer
from tests.kaito.controllers.harness import (
    NODE,
    NODECLAIM,
    WORKSPACE,
    condition,
    eventually,
    install_crds,
    running_operator,
    workspace,
)
from tests.kaito.provisioner.fake_arm import FakeARM

SUB, RG, CLUSTER = "00000000-0000-0000-0000-000000000000", "rg-kaito", "aks-kaito"


class StaticCredential:
    """An async token credential that hands out a fixed token (the fake ARM does not check it)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.fixture
async def server() -> AsyncIterator[APIServer]:
    async with APIServer() as srv:
        yield srv


@pytest.fixture
async def client(server: APIServer) -> AsyncIterator[Client]:
    async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as cl:
        await install_crds(cl)
        yield cl


@pytest.fixture
async def arm(tmp_path: Path, client: Client) -> AsyncIterator[FakeARM]:
    fake = FakeARM(tmp_path)

    async def node_joins(pool: dict[str, Any]) -> None:
        props = pool["properties"]
        name = f"aks-{pool['name']}-12345678-vmss000000"
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {**(props.get("nodeLabels") or {}), LABEL_AGENTPOOL: pool["name"],
                                                  c.LABEL_INSTANCE_TYPE: props["vmSize"]}},
            "spec": {"providerID": f"azure:///subscriptions/{SUB}/resourceGroups/mc_{RG}/providers/Microsoft.Compute/"
                                   f"virtualMachineScaleSets/aks-{pool['name']}-vmss/virtualMachines/0"},
            "status": {"capacity": {c.RESOURCE_GPU: "1"}, "allocatable": {c.RESOURCE_GPU: "1"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": ""}]},
        }
        created = await client.create(node)
        if not (created.get("status") or {}).get("conditions"):  # the emulator drops status on create
            created["status"] = node["status"]
            await client.status().update(created)

    async def node_leaves(pool: dict[str, Any]) -> None:
        for node in (await client.list(NODE, label_selector={LABEL_AGENTPOOL: pool["name"]}))["items"]:
            try:
                await client.delete(node)
            except NotFound:
                pass

    fake.on_ready, fake.on_deleted = node_joins, node_leaves
    await fake.start()
    yield fake
    await fake.stop()


def provider_for(arm: FakeARM, client: Client) -> AzureProvider:
    return AzureProvider(subscription_id=SUB, resource_group=RG, cluster_name=CLUSTER, node_client=client,
                         credential=StaticCredential(), base_url=arm.url, polling_interval=0.01,
                         client_kwargs={"connection_verify": str(arm.ca_path)})


def nodeclaim(name: str, vm_size: str = "Standard_NC6s_v3") -> dict[str, Any]:
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"apps": "phi", c.LABEL_NODEPOOL: c.NODEPOOL_KAITO}},
        "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                 "requirements": [{"key": c.LABEL_INSTANCE_TYPE, "operator": "In", "values": [vm_size]}],
                 "resources": {"requests": {"storage": "120Gi"}}},
    }


def test_pool_names_fit_aks_rules() -> None:
    name = pool_name("workspace-phi-3-mini-0a1b2c3d-0")
    assert len(name) <= 12 and name.isalnum() and name.islower() and name[0].isalpha()
    assert pool_name("a") != pool_name("b")


async def test_one_agent_pool_per_nodeclaim_with_the_nodeclaims_shape(arm: FakeARM, client: Client) -> None:
    provider = provider_for(arm, client)
    try:
        machine = await provider.create(nodeclaim("ws-1-0"))
        assert machine.state == "Creating"
        running = await eventually(lambda: _running(provider, "ws-1-0"))
        assert running.node_name == f"aks-{pool_name('ws-1-0')}-12345678-vmss000000"
        assert running.provider_id.startswith("azure:///subscriptions/")
        assert running.capacity[c.RESOURCE_GPU] == "1"
        props = arm.pools[pool_name("ws-1-0")]["properties"]
        assert props["vmSize"] == "Standard_NC6s_v3" and props["count"] == 1 and props["mode"] == "User"
        assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
        assert props["osDiskSizeGB"] == 120 and props["nodeLabels"]["apps"] == "phi"
        assert props["tags"][TAG_NODECLAIM] == "ws-1-0"
        again = await provider.create(nodeclaim("ws-1-0"))  # idempotent: no second PUT
        assert again.state == "Running"
        assert sum(1 for m, _ in arm.requests if m == "PUT") == 1
        assert [m.name for m in await provider.list()] == ["ws-1-0"]
        await provider.delete("ws-1-0")
        assert arm.pools == {}
        with pytest.raises(MachineNotFoundError):
            await provider.get("ws-1-0")
        await provider.delete("ws-1-0")  # 404 on delete: already gone
    finally:
        await provider.aclose()


async def _running(provider: AzureProvider, name: str) -> Any:
    machine = await provider.get(name)
    return machine if machine.state == "Running" and machine.node_name else None


async def test_quota_throttling_and_async_failures_are_typed(arm: FakeARM, client: Client) -> None:
    provider = provider_for(arm, client)
    try:
        arm.quota_exceeded.add("Standard_NC24s_v3")
        with pytest.raises(QuotaExceededError, match="quota"):
            await provider.create(nodeclaim("ws-q-0", "Standard_NC24s_v3"))
        arm.throttle_next = 1
        with pytest.raises(ThrottledError) as throttled:
            await provider.create(nodeclaim("ws-t-0"))
        assert throttled.value.retry_after == 1.0
        arm.fail_async.add("Standard_NC12s_v3")
        await provider.create(nodeclaim("ws-f-0", "Standard_NC12s_v3"))

        async def failed() -> Any:
            machine = await provider.get("ws-f-0")
            return machine if machine.state == "Failed" and machine.message else None

        machine = await eventually(failed)
        assert "Allocation failed" in machine.message
        with pytest.raises(InstanceTypeUnavailableError):
            await provider.create({**nodeclaim("ws-x-0"), "spec": {"requirements": []}})
        assert issubclass(ThrottledError, ProviderError)
    finally:
        await provider.aclose()


async def test_operator_with_the_azure_provider(server: APIServer, client: Client, arm: FakeARM) -> None:
    provider = provider_for(arm, client)
    arm.quota_exceeded.add("Standard_NC24s_v3")
    try:
        async with running_operator(server, client, provider=provider):
            await client.create(workspace("az"))
            await client.create(workspace("az-quota", instance_type="Standard_NC24s_v3"))

            async def ready(name: str, type_: str, status: str) -> bool:
                ws = await client.get(WORKSPACE, name, "default")
                return (condition(ws, type_) or {}).get("status") == status

            await eventually(lambda: ready("az", c.COND_RESOURCE_READY, "True"), timeout=30)
            await eventually(lambda: ready("az-quota", c.COND_RESOURCE_READY, "False"), timeout=30)
            ws = await client.get(WORKSPACE, "az-quota", "default")
            cond = condition(ws, c.COND_RESOURCE_READY)
            assert cond is not None and cond["reason"] == c.REASON_NODECLAIM_QUOTA_EXCEEDED, cond
            assert "quota" in cond["message"]
            assert len(arm.pools) == 1
            await client.delete(await client.get(WORKSPACE, "az", "default"))
            await client.delete(await client.get(WORKSPACE, "az-quota", "default"))

            async def all_gone() -> bool:
                left = (await client.list(WORKSPACE, "default"))["items"]
                return not left and not (await client.list(NODECLAIM))["items"]

            await eventually(all_gone, timeout=30)
            assert arm.pools == {}
            assert (await client.list(NODE))["items"] == []
    finally:
        await provider.aclose()
