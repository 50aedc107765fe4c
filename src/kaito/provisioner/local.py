"""The ``local`` provider: a "machine" is a Node object registered in the API server, for ``kaito dev`` and tests.

On a :class:`~kreconcile.testing.LocalCluster` a local kubelet starts serving every Node that appears, so pods
scheduled on a local machine really run as processes. The Node carries what a GPU node of the instance type would:
the SKU's labels (``node.kubernetes.io/instance-type``, ``nvidia.com/gpu.product``/``.count``/``.memory``,
``accelerator=nvidia``), the NodeClaim's labels and taints, ``nvidia.com/gpu`` capacity and a ``Ready``
condition. The Node object *is* the inventory (label ``kaito.sh/machine``), so a restarted operator sees the same
machines and never registers one twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from kaito.api import constants as c
from kaito.presets.catalog import Catalog, load_catalog
from kaito.provisioner.base import (
    InstanceTypeUnavailableError,
    Machine,
    MachineNotFoundError,
    ProviderError,
    QuotaExceededError,
)
from kreconcile.clock import Clock, RealClock
from kreconcile.errors import AlreadyExists, NotFound
from kreconcile.gvk import GVK

log = structlog.get_logger("kaito.provisioner.local")

NODE = GVK("", "v1", "Node")
LABEL_MACHINE = "kaito.sh/machine"
"""On Nodes registered by the local provider: the NodeClaim (machine) name."""
LABEL_NODECLAIM = "karpenter.sh/nodeclaim"
PROVIDER_ID_PREFIX = "local:///"

DEFAULT_CPU = "8"
DEFAULT_MEMORY = "32Gi"
DEFAULT_PODS = "110"


class LocalProvider:
    """Registers a Node per NodeClaim after ``launch_delay`` seconds.

    Args:
        client: a kreconcile client (``get``/``list``/``create``/``delete`` of Nodes; the manager's is fine).
        catalog: SKU catalog for the node labels and GPU capacity (default: the packaged one).
        launch_delay: seconds between ``create`` and the Node appearing (0 for tests; a few seconds makes
            ``kaito dev`` look like a cloud).
        failures: instance type → reason to fail ``create`` with (``"QuotaExceeded"``,
            ``"InstanceTypeUnavailable"`` or any other CamelCase reason), for tests and demos.
        clock: used for the launch delay.
    """

    name = "local"

    def __init__(
        self,
        client: Any,
        catalog: Catalog | None = None,
        *,
        launch_delay: float = 0.0,
        failures: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog or load_catalog()
        self.launch_delay = launch_delay
        self.failures = dict(failures or {})
        self.clock = clock or RealClock()
        self._launching: dict[str, tuple[Machine, asyncio.Task[None]]] = {}
        self.creates = 0
        """Machines launched by this process (tests assert on it: a restart must not launch twice)."""

    async def create(self, nodeclaim: Mapping[str, Any]) -> Machine:
        """Launch (or return) the machine for ``nodeclaim``; the Node appears after ``launch_delay``.

        Raises:
            QuotaExceededError / InstanceTypeUnavailableError / ProviderError: an injected failure, or an
                instance type missing from the catalog.
        """
        name = nodeclaim["metadata"]["name"]
        instance_type = _instance_type(nodeclaim)
        existing = await self._machine_from_node(name)
        if existing is not None:
            return existing
        if name in self._launching:
            return self._launching[name][0]
        failure = self.failures.get(instance_type)
        if failure is not None:
            raise _failure(failure, instance_type)
        sku = self.catalog.find_sku(instance_type)
        if sku is None:
            raise InstanceTypeUnavailableError(
                f"instance type {instance_type!r} is not in the catalog; the local provider can only simulate "
                f"known SKUs (see `kaito plan` or docs/api.md)"
            )
        node = self._node_for(nodeclaim, sku.node_labels(), sku.gpu_count)
        machine = _machine(node, state="Creating")
        task = asyncio.create_task(self._register(name, node), name=f"local-provider:{name}")
        self._launching[name] = (machine, task)
        self.creates += 1
        log.info("local_machine_launching", machine=name, instance_type=instance_type, delay_s=self.launch_delay)
        return machine

    async def get(self, name: str) -> Machine:
        """The machine ``name`` (``Running`` once its Node exists, ``Creating`` before).

        Raises:
            MachineNotFoundError: neither a Node nor a launch in progress.
        """
        machine = await self._machine_from_node(name)
        if machine is not None:
            return machine
        if name in self._launching:
            return self._launching[name][0]
        raise MachineNotFoundError(f"local machine {name!r} does not exist")

    async def delete(self, name: str) -> None:
        """Cancel a pending launch and delete the Node (the local kubelet then stops its pods' processes)."""
        launching = self._launching.pop(name, None)
        if launching is not None:
            launching[1].cancel()
        try:
            await self.client.delete({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        except NotFound:
            pass
        log.info("local_machine_deleted", machine=name)

    async def list(self) -> list[Machine]:
        """Machines with a Node (label ``kaito.sh/machine``) plus launches in progress."""
        result = await self.client.list(NODE, label_selector=LABEL_MACHINE)
        items = result["items"] if isinstance(result, dict) else result
        machines = {m.name: m for m in (_machine(n, state="Running") for n in items)}
        for name, (machine, _) in self._launching.items():
            machines.setdefault(name, machine)
        return list(machines.values())

    async def aclose(self) -> None:
        """Cancel launches in progress (their Nodes are never registered)."""
        for _, task in self._launching.values():
            task.cancel()
        self._launching.clear()

    # ------------------------------------------------------------------ internals

    async def _register(self, name: str, node: dict[str, Any]) -> None:
        try:
            await self.clock.sleep(self.launch_delay)
            node["status"]["conditions"] = [_ready_condition(self.clock.wall())]
            try:
                created = await self.client.create(node)
                if not (created.get("status") or {}).get("conditions"):  # a server that drops status on create
                    created["status"] = node["status"]
                    await self.client.status().update(created)
            except AlreadyExists:
                pass
            log.info("local_machine_registered", machine=name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the launch visible as Failed rather than losing it
            machine = self._launching.get(name, (None, None))[0]
            if machine is not None:
                failed = Machine(machine.name, machine.provider_id, machine.instance_type, "Failed", message=str(exc))
                self._launching[name] = (failed, self._launching[name][1])
            log.warning("local_machine_register_failed", machine=name, error=str(exc))
            return
        self._launching.pop(name, None)

    async def _machine_from_node(self, name: str) -> Machine | None:
        try:
            node = await self.client.get(NODE, name)
        except NotFound:
            return None
        if (node.get("metadata", {}).get("labels") or {}).get(LABEL_MACHINE) != name:
            return None
        return _machine(node, state="Deleting" if node["metadata"].get("deletionTimestamp") else "Running")

    def _node_for(self, nodeclaim: Mapping[str, Any], sku_labels: Mapping[str, str], gpus: int) -> dict[str, Any]:
        name = nodeclaim["metadata"]["name"]
        labels = {
            **(nodeclaim["metadata"].get("labels") or {}),
            **sku_labels,
            c.LABEL_OS: "linux",
            "kubernetes.io/hostname": name,
            LABEL_MACHINE: name,
            LABEL_NODECLAIM: name,
        }
        capacity = {"cpu": DEFAULT_CPU, "memory": DEFAULT_MEMORY, "pods": DEFAULT_PODS}
        if gpus:
            capacity[c.RESOURCE_GPU] = str(gpus)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "providerID": PROVIDER_ID_PREFIX + name,
                "taints": [dict(t) for t in (nodeclaim.get("spec") or {}).get("taints") or []],
            },
            "status": {
                "capacity": dict(capacity),
                "allocatable": dict(capacity),
                "conditions": [_ready_condition(self.clock.wall())],
            },
        }


def _ready_condition(now: float) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "local machine is ready",
        "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
    }


def _instance_type(nodeclaim: Mapping[str, Any]) -> str:
    for req in (nodeclaim.get("spec") or {}).get("requirements") or []:
        if req.get("key") == c.LABEL_INSTANCE_TYPE and req.get("values"):
            return str(req["values"][0])
    raise InstanceTypeUnavailableError(
        f"NodeClaim {nodeclaim['metadata']['name']}: spec.requirements has no {c.LABEL_INSTANCE_TYPE} In [...] entry"
    )


def _machine(node: Mapping[str, Any], *, state: str) -> Machine:
    meta = node["metadata"]
    labels = meta.get("labels") or {}
    return Machine(
        name=labels.get(LABEL_MACHINE, meta["name"]),
        provider_id=(node.get("spec") or {}).get("providerID", PROVIDER_ID_PREFIX + meta["name"]),
        instance_type=labels.get(c.LABEL_INSTANCE_TYPE, ""),
        state=state,
        node_name=meta["name"] if state != "Creating" else None,
        capacity=dict((node.get("status") or {}).get("capacity") or {}),
    )


_FAILURES: dict[str, Callable[[str], ProviderError]] = {
    "QuotaExceeded": lambda it: QuotaExceededError(
        f"Operation could not be completed as it results in exceeding approved quota for the {it} family "
        f"(local provider, injected failure); request more quota or use another instance type"
    ),
    "InstanceTypeUnavailable": lambda it: InstanceTypeUnavailableError(
        f"instance type {it} is not available in this region (local provider, injected failure)"
    ),
}


def _failure(reason: str, instance_type: str) -> ProviderError:
    make = _FAILURES.get(reason)
    if make is not None:
        return make(instance_type)
    err = ProviderError(f"{reason}: injected failure for {instance_type} (local provider)")
    err.reason = reason
    return err
