"""The machine controller: turns kaito's NodeClaims into machines through a :class:`~kaito.provisioner.Provider`.

It plays upstream's gpu-provisioner role (Karpenter-core's NodeClaim lifecycle, one machine per NodeClaim) for
NodeClaims labelled ``karpenter.sh/nodepool=kaito``:

1. a finalizer (``karpenter.sh/termination``, Karpenter's) so the machine is deleted before the NodeClaim goes,
   and the labels its single-value requirements resolve to (``node.kubernetes.io/instance-type``, ...: the
   NodeClaim CRD's TYPE column), as Karpenter's launch does (:func:`resolved_labels`);
2. ``provider.create`` → ``Launched`` (with ``status.providerID`` and capacity) or ``Launched=False`` with the
   provider's reason (``QuotaExceeded``, ``InstanceTypeUnavailable``, ``Throttled``) and message;
3. the Node joins → ``Registered`` (``status.nodeName``); the Node is Ready (and has its ``nvidia.com/gpu``
   capacity when the instance type has GPUs) → ``Initialized`` → ``Ready``;
4. a machine that vanished after launch marks the NodeClaim ``Ready=False, MachineNotFound``;
5. on delete: ``provider.delete``, wait until the machine is gone, remove the finalizer.

Status is computed by :func:`compute_status` from what was observed and written only when it changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from kaito.api import constants as c
from kaito.provisioner.base import Machine, MachineNotFoundError, Provider, ProviderError
from kreconcile.clock import Clock, RealClock
from kreconcile.conditions import is_true, set_condition
from kreconcile.errors import Conflict, NotFound
from kreconcile.finalizers import add_finalizer, has_finalizer, remove_finalizer
from kreconcile.gvk import GVK
from kreconcile.reconcile import Request, Result

log = structlog.get_logger("kaito.controllers.machine")

NODECLAIM = GVK(c.KARPENTER_GROUP, c.NODECLAIM_VERSION, c.NODECLAIM_KIND)
NODE = GVK("", "v1", "Node")
TERMINATION_FINALIZER = "karpenter.sh/termination"
"""Karpenter's NodeClaim finalizer: the machine is deleted before the NodeClaim object goes."""

LAUNCH_RETRY_S = 60.0
"""Seconds between launch attempts after a retryable cloud error without Retry-After (quota may be raised)."""
POLL_S = 5.0
"""Seconds between looks at a machine that is launching or deleting (providers don't send events)."""

REASON_MACHINE_NOT_FOUND = "MachineNotFound"
REASON_NODE_NOT_REGISTERED = "NodeNotRegistered"
REASON_NODE_NOT_READY = "NodeNotReady"
REASON_GPU_NOT_READY = "GPUCapacityMissing"


@dataclass(frozen=True)
class Observed:
    """What the reconcile saw: the machine (None if none), the provider error of this pass, and the Node."""

    machine: Machine | None
    error: ProviderError | None
    node: Mapping[str, Any] | None
    gpus_expected: int


def node_ready(node: Mapping[str, Any] | None) -> bool:
    """True when the Node's ``Ready`` condition is ``True``."""
    if node is None:
        return False
    return is_true((node.get("status") or {}).get("conditions") or [], "Ready")


def gpu_capacity(node: Mapping[str, Any] | None) -> int:
    """The Node's ``nvidia.com/gpu`` capacity (0 when absent or unparsable)."""
    if node is None:
        return 0
    value = ((node.get("status") or {}).get("capacity") or {}).get(c.RESOURCE_GPU, "0")
    try:
        return int(str(value))
    except ValueError:
        return 0


def compute_status(old: Mapping[str, Any], observed: Observed, generation: int | None, now: float) -> dict[str, Any]:
    """The NodeClaim status for ``observed`` (pure): conditions Launched → Registered → Initialized → Ready, plus
    ``providerID``, ``nodeName``, ``capacity``. Conditions keep their lastTransitionTime unless status flips."""
    status = copy.deepcopy(dict(old))
    conds: list[dict[str, Any]] = status.setdefault("conditions", [])
    machine, node = observed.machine, observed.node

    def cond(type_: str, ok: bool, reason: str, message: str = "") -> None:
        set_condition(conds, type_, "True" if ok else "False", reason, message[: c.CONDITION_MESSAGE_LIMIT],
                      generation, now)

    if machine is None:
        if observed.error is not None:
            cond(c.NODECLAIM_LAUNCHED, False, observed.error.reason, str(observed.error))
            cond(c.NODECLAIM_READY, False, observed.error.reason, str(observed.error))
        elif is_true(conds, c.NODECLAIM_LAUNCHED):
            msg = "the provider no longer has this machine; delete the NodeClaim to get a new one"
            cond(c.NODECLAIM_READY, False, REASON_MACHINE_NOT_FOUND, msg)
        return status
    if machine.state == "Failed":
        cond(c.NODECLAIM_LAUNCHED, False, "LaunchFailed", machine.message or "the machine failed to launch")
        cond(c.NODECLAIM_READY, False, "LaunchFailed", machine.message or "the machine failed to launch")
        return status
    status["providerID"] = machine.provider_id
    if machine.capacity:
        status["capacity"] = dict(machine.capacity)
    cond(c.NODECLAIM_LAUNCHED, True, c.NODECLAIM_LAUNCHED)
    if node is None:
        cond(c.NODECLAIM_REGISTERED, False, REASON_NODE_NOT_REGISTERED, "waiting for the machine's Node to join")
        cond(c.NODECLAIM_READY, False, REASON_NODE_NOT_REGISTERED, "waiting for the machine's Node to join")
        return status
    status["nodeName"] = node["metadata"]["name"]
    cond(c.NODECLAIM_REGISTERED, True, c.NODECLAIM_REGISTERED)
    if not node_ready(node):
        cond(c.NODECLAIM_INITIALIZED, False, REASON_NODE_NOT_READY, f"Node {status['nodeName']} is not Ready")
        cond(c.NODECLAIM_READY, False, REASON_NODE_NOT_READY, f"Node {status['nodeName']} is not Ready")
        return status
    if observed.gpus_expected and gpu_capacity(node) < observed.gpus_expected:
        msg = (f"Node {status['nodeName']} reports {gpu_capacity(node)} nvidia.com/gpu of "
               f"{observed.gpus_expected}: is the NVIDIA device plugin running?")
        cond(c.NODECLAIM_INITIALIZED, False, REASON_GPU_NOT_READY, msg)
        cond(c.NODECLAIM_READY, False, REASON_GPU_NOT_READY, msg)
        return status
    cond(c.NODECLAIM_INITIALIZED, True, c.NODECLAIM_INITIALIZED)
    cond(c.NODECLAIM_READY, True, c.NODECLAIM_READY)
    return status


class MachineReconciler:
    """Reconciles one NodeClaim (see the module docstring).

    Args:
        client: the manager's client (cached reads, live writes).
        provider: the machine provider.
        gpus_for: instance type → GPUs a Node of it must report (0: don't check), usually from the SKU catalog.
        recorder: an event recorder (``event(obj, type, reason, note, action)``) or None.
        clock: for condition timestamps.
    """

    def __init__(
        self,
        client: Any,
        provider: Provider,
        *,
        gpus_for: Any = None,
        recorder: Any = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.provider = provider
        self.gpus_for = gpus_for or (lambda _it: 0)
        self.recorder = recorder
        self.clock = clock or RealClock()

    async def reconcile(self, request: Request) -> Result:
        """Drive NodeClaim ``request.name`` toward a Ready machine, or delete its machine when it is deleting."""
        try:
            nc = await self.client.get(NODECLAIM, request.name)
        except NotFound:
            return Result()
        labels = nc["metadata"].get("labels") or {}
        if labels.get(c.LABEL_NODEPOOL) != c.NODEPOOL_KAITO:
            return Result()
        if nc["metadata"].get("deletionTimestamp"):
            return await self._finalize(nc)
        missing = {k: v for k, v in resolved_labels(nc).items() if k not in labels}
        if add_finalizer(nc, TERMINATION_FINALIZER) | bool(missing):
            nc["metadata"]["labels"] = {**labels, **missing}
            nc = await self.client.update(nc)
        instance_type = _instance_type(nc)
        error: ProviderError | None = None
        machine: Machine | None = None
        launched = is_true((nc.get("status") or {}).get("conditions") or [], c.NODECLAIM_LAUNCHED)
        try:
            machine = await self.provider.get(nc["metadata"]["name"])
        except MachineNotFoundError:
            if not launched:
                try:
                    machine = await self.provider.create(nc)
                    self._event(nc, "Normal", "Launched", f"launching a {instance_type} machine", "Launch")
                except ProviderError as exc:
                    error = exc
        except ProviderError as exc:
            error = exc
        node = await self._node_of(machine)
        observed = Observed(machine, error, node, self.gpus_for(instance_type))
        status = compute_status(nc.get("status") or {}, observed, nc["metadata"].get("generation"), self.clock.wall())
        if status != (nc.get("status") or {}):
            if error is not None:
                self._event(nc, "Warning", error.reason, str(error), "Launch")
            await self._write_status(nc, status)
        if error is not None:
            if not error.retryable:
                return Result()
            return Result(requeue_after=error.retry_after or LAUNCH_RETRY_S)
        if machine is None or not is_true(status.get("conditions") or [], c.NODECLAIM_READY):
            return Result(requeue_after=POLL_S)
        return Result()

    async def _finalize(self, nc: dict[str, Any]) -> Result:
        name = nc["metadata"]["name"]
        if not has_finalizer(nc, TERMINATION_FINALIZER):
            return Result()
        try:
            await self.provider.delete(name)
            await self.provider.get(name)
            return Result(requeue_after=POLL_S)  # still going away
        except MachineNotFoundError:
            pass
        except ProviderError as exc:
            self._event(nc, "Warning", exc.reason, str(exc), "Delete")
            return Result(requeue_after=exc.retry_after or POLL_S)
        node_name = (nc.get("status") or {}).get("nodeName")
        if node_name:
            try:
                await self.client.delete({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}})
            except NotFound:
                pass
        remove_finalizer(nc, TERMINATION_FINALIZER)
        try:
            await self.client.update(nc)
        except NotFound:
            return Result()
        self._event(nc, "Normal", "MachineDeleted", f"machine {name} deleted", "Delete")
        return Result()

    async def _node_of(self, machine: Machine | None) -> dict[str, Any] | None:
        if machine is None or not machine.node_name:
            return None
        try:
            node: dict[str, Any] = await self.client.get(NODE, machine.node_name)
            return node
        except NotFound:
            return None

    async def _write_status(self, nc: dict[str, Any], status: dict[str, Any]) -> None:
        updated = {**nc, "status": status}
        try:
            await self.client.status().update(updated)
        except Conflict:
            raise  # retried with back-off by the controller, from a fresh read
        except NotFound:
            return

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, note: str, action: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, note, action)


def resolved_labels(nc: Mapping[str, Any]) -> dict[str, str]:
    """The labels a NodeClaim's single-value ``In`` requirements resolve to (``node.kubernetes.io/instance-type``,
    ``kubernetes.io/os``, ...). Karpenter's launch sets them on the NodeClaim (``PopulateNodeClaimDetails`` in
    ``pkg/controllers/nodeclaim/lifecycle/launch.go``: requirement labels, under the user's own labels), which
    fills the NodeClaim CRD's TYPE printer column."""
    labels: dict[str, str] = {}
    for req in (nc.get("spec") or {}).get("requirements") or []:
        values = req.get("values") or []
        if req.get("operator") == "In" and len(values) == 1 and req.get("key"):
            labels[str(req["key"])] = str(values[0])
    return labels


def _instance_type(nc: Mapping[str, Any]) -> str:
    for req in (nc.get("spec") or {}).get("requirements") or []:
        if req.get("key") == c.LABEL_INSTANCE_TYPE and req.get("values"):
            return str(req["values"][0])
    return ""
