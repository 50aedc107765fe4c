"""The ``azure`` provider: one AKS agent pool per NodeClaim (upstream's gpu-provisioner design).

Each NodeClaim becomes a user-mode Linux agent pool of ``count: 1`` whose VM size is the NodeClaim's instance
type, with the NodeClaim's labels and taints and an OS disk sized from its storage request. AKS names agent pools
with at most 12 lower-case letters and digits, so the pool is named ``k`` + 11 hex digits of the SHA-256 of the
NodeClaim name and tagged ``kaito.sh/nodeclaim=<name>`` (how :meth:`AzureProvider.list` maps pools back).

Calls go through ``azure-mgmt-containerservice`` (async) with ``azure-identity``'s ``DefaultAzureCredential``
unless a credential is given. Creation is a long-running operation: the initial PUT happens in ``create`` (quota
and unknown-size errors surface there); the SDK's poller then follows ``Azure-AsyncOperation`` in the
background, and a terminal failure is reported by ``get`` as a ``Failed`` machine with ARM's message. The SDK's
own retries are off (``retry_total=0``): a 429 becomes :class:`~kaito.provisioner.ThrottledError` carrying
Retry-After, and the machine controller backs off.

The machine's Node is found by the AKS label ``kubernetes.azure.com/agentpool=<pool>`` through ``node_client``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import structlog

from kaito.api import constants as c
from kaito.provisioner.base import (
    InstanceTypeUnavailableError,
    Machine,
    MachineNotFoundError,
    ProviderError,
    QuotaExceededError,
    ThrottledError,
)
from kreconcile.gvk import GVK

log = structlog.get_logger("kaito.provisioner.azure")

NODE = GVK("", "v1", "Node")
TAG_NODECLAIM = "kaito.sh/nodeclaim"
LABEL_AGENTPOOL = "kubernetes.azure.com/agentpool"
DEFAULT_POLLING_INTERVAL_S = 10.0
"""Seconds between LRO status polls (ARM's Retry-After wins when it sends one)."""

_STATES = {"Succeeded": "Running", "Failed": "Failed", "Deleting": "Deleting", "Canceled": "Failed"}
_QUOTA_CODES = {"QuotaExceeded", "OperationNotAllowed", "ErrCode_InsufficientVCPUQuota"}
_SIZE_CODES = {"VMSizeNotSupported", "SkuNotAvailable", "InvalidParameter", "ReferencedResourceNotProvisioned"}


def pool_name(nodeclaim_name: str) -> str:
    """The agent pool name for a NodeClaim: ``k`` + 11 hex digits (AKS: ≤ 12 lower-case alphanumerics)."""
    return "k" + hashlib.sha256(nodeclaim_name.encode()).hexdigest()[:11]


def _storage_gb(nodeclaim: Mapping[str, Any]) -> int | None:
    value = str(((nodeclaim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", ""))
    match = re.fullmatch(r"(\d+)(Gi|G)?", value)
    return int(match.group(1)) if match else None


class AzureProvider:
    """Machines as AKS agent pools.

    Args:
        subscription_id, resource_group, cluster_name: the AKS cluster (flags/env of the operator:
            ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP``, ``AZURE_CLUSTER_NAME``).
        node_client: a kreconcile client to find the Node of a pool (``list`` of Nodes by label).
        credential: an async ``TokenCredential``; default ``azure.identity.aio.DefaultAzureCredential()``.
        base_url: the ARM endpoint (default public Azure; tests point it at a fake ARM server).
        polling_interval: seconds between LRO polls.
        client_kwargs: extra ``ContainerServiceClient`` keyword arguments (e.g. ``connection_verify``).

    Raises:
        ValueError: a missing subscription, resource group or cluster name (names the flag to set).
    """

    name = "azure"

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        cluster_name: str,
        node_client: Any,
        credential: Any = None,
        base_url: str | None = None,
        polling_interval: float = DEFAULT_POLLING_INTERVAL_S,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        for flag, value in (("--azure-subscription-id", subscription_id), ("--azure-resource-group", resource_group),
                            ("--azure-cluster-name", cluster_name)):
            if not value:
                raise ValueError(f"the azure provider needs {flag} (or its environment variable)")
        from azure.mgmt.containerservice.aio import ContainerServiceClient

        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
        kwargs: dict[str, Any] = {"retry_total": 0, **(client_kwargs or {})}
        if base_url is not None:
            kwargs["base_url"] = base_url
        self._client = ContainerServiceClient(credential, subscription_id, **kwargs)
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.cluster_name = cluster_name
        self.node_client = node_client
        self.polling_interval = polling_interval
        self._failures: dict[str, str] = {}
        self._pollers: dict[str, asyncio.Task[None]] = {}

    async def create(self, nodeclaim: Mapping[str, Any]) -> Machine:
        """PUT the agent pool (idempotent: an existing pool is returned as is) and follow the LRO in the background.

        Raises:
            QuotaExceededError, InstanceTypeUnavailableError, ThrottledError, ProviderError: ARM's answer.
        """
        from azure.mgmt.containerservice.models import AgentPool

        name = nodeclaim["metadata"]["name"]
        try:
            return await self.get(name)
        except MachineNotFoundError:
            pass
        spec = nodeclaim.get("spec") or {}
        instance_type = next((r["values"][0] for r in spec.get("requirements") or []
                              if r.get("key") == c.LABEL_INSTANCE_TYPE and r.get("values")), "")
        if not instance_type:
            raise InstanceTypeUnavailableError(
                f"NodeClaim {name}: spec.requirements has no {c.LABEL_INSTANCE_TYPE} In [...] entry")
        taints = [f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in spec.get("taints") or []]
        pool = AgentPool({"properties": {
            "count": 1, "vmSize": instance_type, "mode": "User", "osType": "Linux",
            "nodeLabels": dict(nodeclaim["metadata"].get("labels") or {}), "nodeTaints": taints,
            "osDiskSizeGB": _storage_gb(nodeclaim), "tags": {TAG_NODECLAIM: name},
        }})
        pname = pool_name(name)
        try:
            poller = await self._client.agent_pools.begin_create_or_update(
                self.resource_group, self.cluster_name, pname, pool, polling_interval=self.polling_interval)
        except Exception as exc:
            raise _translate(exc, instance_type) from exc
        self._failures.pop(name, None)
        self._pollers[name] = asyncio.create_task(self._follow(name, poller), name=f"azure-lro:{pname}")
        log.info("agent_pool_creating", nodeclaim=name, pool=pname, vm_size=instance_type)
        return Machine(name, self._pool_provider_id(pname), instance_type, "Creating")

    async def get(self, name: str) -> Machine:
        """The machine behind NodeClaim ``name`` from the agent pool's provisioning state and its Node.

        Raises:
            MachineNotFoundError: no such agent pool. ThrottledError / ProviderError: ARM failed.
        """
        pname = pool_name(name)
        try:
            pool = await self._client.agent_pools.get(self.resource_group, self.cluster_name, pname)
        except Exception as exc:
            raise _translate(exc, "") from exc
        return await self._machine(name, pool)

    async def delete(self, name: str) -> None:
        """Delete the agent pool and wait for the LRO; a missing pool is already deleted."""
        pname = pool_name(name)
        task = self._pollers.pop(name, None)
        if task is not None:
            task.cancel()
        try:
            poller = await self._client.agent_pools.begin_delete(
                self.resource_group, self.cluster_name, pname, polling_interval=self.polling_interval)
            await poller.result()
        except Exception as exc:
            err = _translate(exc, "")
            if isinstance(err, MachineNotFoundError):
                return
            raise err from exc
        log.info("agent_pool_deleted", nodeclaim=name, pool=pname)

    async def list(self) -> list[Machine]:
        """Every agent pool tagged with a NodeClaim (kaito's), as machines."""
        machines: list[Machine] = []
        try:
            async for pool in self._client.agent_pools.list(self.resource_group, self.cluster_name):
                owner = (pool.tags or {}).get(TAG_NODECLAIM)
                if owner:
                    machines.append(await self._machine(owner, pool))
        except Exception as exc:
            raise _translate(exc, "") from exc
        return machines

    async def aclose(self) -> None:
        """Stop following LROs and close the ARM client."""
        for task in self._pollers.values():
            task.cancel()
        self._pollers.clear()
        await self._client.close()

    # ------------------------------------------------------------------ internals

    async def _follow(self, name: str, poller: Any) -> None:
        try:
            await poller.result()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failures[name] = str(getattr(exc, "message", None) or exc)
            log.warning("agent_pool_create_failed", nodeclaim=name, error=self._failures[name])
        finally:
            self._pollers.pop(name, None)

    async def _machine(self, name: str, pool: Any) -> Machine:
        pname = pool_name(name)
        state = _STATES.get(str(pool.provisioning_state or ""), "Creating")
        node = await self._node(pname) if state == "Running" else None
        capacity = dict((node.get("status") or {}).get("capacity") or {}) if node else {}
        provider_id = (node.get("spec") or {}).get("providerID") if node else None
        return Machine(
            name=name,
            provider_id=provider_id or self._pool_provider_id(pname),
            instance_type=str(pool.vm_size or ""),
            state=state,
            node_name=node["metadata"]["name"] if node else None,
            capacity=capacity,
            message=self._failures.get(name, "") if state == "Failed" else "",
        )

    async def _node(self, pname: str) -> dict[str, Any] | None:
        result = await self.node_client.list(NODE, label_selector={LABEL_AGENTPOOL: pname})
        items = result["items"] if isinstance(result, dict) else result
        return items[0] if items else None

    def _pool_provider_id(self, pname: str) -> str:
        return (f"azure:///subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/"
                f"Microsoft.ContainerService/managedClusters/{self.cluster_name}/agentPools/{pname}")


def _translate(exc: Exception, instance_type: str) -> ProviderError:
    """An ARM error as the provider error whose reason the NodeClaim conditions show."""
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ResourceNotFoundError):
        return MachineNotFoundError(str(exc.message or exc))
    if isinstance(exc, HttpResponseError):
        code = (exc.error.code if exc.error is not None else None) or ""
        message = str(exc.error.message if exc.error is not None and exc.error.message else exc.message)
        status = exc.status_code or 0
        if status == 429:
            response: Any = exc.response
            retry = response.headers.get("Retry-After") if response is not None else None
            return ThrottledError(f"ARM throttled the request: {message}",
                                  retry_after=float(retry) if retry and retry.isdigit() else None)
        if code in _QUOTA_CODES or "quota" in message.lower():
            return QuotaExceededError(f"{code}: {message}")
        if code in _SIZE_CODES and instance_type:
            return InstanceTypeUnavailableError(f"{code}: {message} (instance type {instance_type})")
        err = ProviderError(f"{code or status}: {message}")
        if code and code[0].isupper() and code.isalnum():
            err.reason = code
        return err
    return ProviderError(f"{type(exc).__name__}: {exc}")
