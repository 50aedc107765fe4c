"""Local Nodes: registration, Lease heartbeats, and the kubelet controller that feeds pods to ``ProcessKubelet``.

* :func:`node_object` builds a Node as a kubelet registers it: labels (``kubernetes.io/hostname``,
  ``kubernetes.io/os``, ``kubernetes.io/arch``, ``node.kubernetes.io/instance-type`` when given, plus yours),
  ``capacity`` = ``allocatable`` (cpu, memory, pods, ephemeral-storage, extended resources such as
  ``nvidia.com/gpu``), taints, a ``Ready=True`` condition (reason ``KubeletReady``) and address 127.0.0.1.
  Whoever provisions nodes (kaito's local provider, tests) creates it; :func:`register_node` does create-or-update.
* :class:`NodeHeartbeat` renews the Node's Lease in ``kube-node-lease`` every 10 s (``leaseDurationSeconds`` 40),
  as the kubelet's node lease controller does.
* :class:`KubeletReconciler`: a kreconcile controller over Pods that hands every pod bound to a node served by a
  local kubelet to :meth:`ProcessKubelet.sync_pod`, and tells the kubelet when the pod is gone.
* :class:`ClientKubeletBackend`: the kubelet's view of the API through a kreconcile client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog

from kreconcile.builder import Builder, ManagerLike
from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.clock import Clock, RealClock
from kreconcile.controller import Controller
from kreconcile.errors import AlreadyExists, Conflict, NotFound, ignore_not_found
from kreconcile.events import EventRecorder
from kreconcile.predicates import Funcs
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import CONFIG_MAP, LEASE, NODE, POD, SECRET, with_kind
from kreconcile.testing.kubelet.kubelet import ProcessKubelet
from kreconcile.testing.kubelet.nodeinfo import architecture, node_info
from kreconcile.testing.kubelet.status import rfc3339

log = structlog.get_logger("kreconcile.testing.node")

LEASE_DURATION_S = 40
"""``leaseDurationSeconds`` of node Leases (the kubelet's ``nodeLeaseDurationSeconds`` default)."""
LEASE_RENEW_S = 10.0
"""Seconds between Lease renewals (25 % of the duration, as the kubelet)."""


def node_object(
    name: str,
    labels: Mapping[str, str] | None = None,
    capacity: Mapping[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    now: float | None = None,
    instance_type: str | None = None,
) -> dict[str, Any]:
    """A Node as a kubelet registers it (see module docstring). ``capacity`` defaults to 4 cpu, 16Gi, 110 pods."""
    arch = architecture()
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    }
    if instance_type:
        node_labels["node.kubernetes.io/instance-type"] = instance_type
        node_labels["beta.kubernetes.io/instance-type"] = instance_type
    node_labels.update(labels or {})
    resources = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi", **(capacity or {})}
    stamp = rfc3339(now if now is not None else RealClock().wall())
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels},
        "spec": {"taints": list(taints or [])} if taints else {},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [ready],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": node_info(name),
        },
    }


async def register_node(client: Client, node: dict[str, Any]) -> dict[str, Any]:
    """Create ``node`` with its status (or merge its labels, spec and status into an existing one).

    The status is sent with the create, as a registering kubelet does (the API server keeps a Node's status on
    create), and merged with a status patch afterwards for servers that drop it. Returns the stored Node.
    """
    name = node["metadata"]["name"]
    try:
        stored = await client.create(node)
    except AlreadyExists:
        current = await client.get(NODE, name)
        patch = {"metadata": {"labels": node["metadata"]["labels"]}, "spec": node.get("spec") or {}}
        stored = await client.patch(with_kind(current, NODE), patch)
    if (stored.get("status") or {}).get("allocatable") != node["status"]["allocatable"] or not (
        stored.get("status") or {}
    ).get("conditions"):
        stored = await client.status().patch(with_kind(stored, NODE), {"status": node["status"]})
    return stored


class NodeHeartbeat:
    """Renews ``kube-node-lease/<node>`` every :data:`LEASE_RENEW_S` seconds until stopped (a Runnable)."""

    def __init__(self, client: Client, node_name: str, clock: Clock | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.clock = clock or RealClock()

    def needs_leader_election(self) -> bool:
        return False

    async def renew(self) -> None:
        """Create or renew the Lease once (``renewTime`` = now, microsecond RFC 3339)."""
        now = self.clock.wall()
        micro = rfc3339(now).replace("Z", f".{int((now % 1) * 1e6):06d}Z")
        try:
            node = await self.client.get(NODE, self.node_name)
        except NotFound:
            return
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.node_name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                     "uid": node["metadata"].get("uid", "")}],
            },
            "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": micro},
        }
        try:
            await self.client.create(lease)
        except AlreadyExists:
            await self.client.patch(with_kind(lease, LEASE), {"spec": lease["spec"]})

    async def start(self, stop: asyncio.Event) -> None:
        """Renew until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.renew()
            except Exception as exc:  # keep beating through API hiccups
                log.warning("node_lease_renew_failed", node=self.node_name, error=str(exc))
            sleeper = asyncio.ensure_future(self.clock.sleep(LEASE_RENEW_S))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            stopper.cancel()


class ClientKubeletBackend:
    """:class:`~kreconcile.testing.kubelet.KubeletBackend` over a kreconcile client (events via a recorder)."""

    def __init__(self, client: Client, cache: Cache, recorder: EventRecorder | None = None) -> None:
        self.client = client
        self.cache = cache
        self.recorder = recorder

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await ignore_not_found(self.client.get(SECRET, name, namespace))

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await ignore_not_found(self.client.get(CONFIG_MAP, name, namespace))

    async def write_pod_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid")},
                "status": status}
        try:
            await self.client.status().patch(body, {"metadata": {"uid": meta.get("uid")}, "status": status})
        except (NotFound, Conflict) as exc:  # Conflict: the uid precondition failed, the name is another pod now
            raise LookupError(str(exc)) from exc

    async def finalize_pod(self, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        ref = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": meta.get("name"),
                                                               "namespace": meta.get("namespace")}}
        with contextlib.suppress(NotFound):
            await self.client.delete(ref, grace_period_seconds=0, preconditions={"uid": meta.get("uid", "")})

    def record_event(self, pod: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        with contextlib.suppress(Exception):
            self.recorder.event(with_kind(dict(pod), POD), event_type, reason, message, reason)


class KubeletReconciler:
    """Routes each pod to the :class:`ProcessKubelet` of its node (``kubelets`` maps node name → kubelet)."""

    def __init__(self, cache: Cache, kubelets: Mapping[str, ProcessKubelet]) -> None:
        self.cache = cache
        self.kubelets = kubelets
        self._placement: dict[tuple[str, str], tuple[str, str]] = {}
        self._forgetting: set[asyncio.Task[None]] = set()

    async def reconcile(self, request: Request) -> Result:
        key = (request.namespace or "", request.name)
        try:
            pod = await self.cache.get(POD, request.name, request.namespace)
        except NotFound:
            placed = self._placement.pop(key, None)
            if placed is not None and placed[0] in self.kubelets:
                task = asyncio.create_task(self.kubelets[placed[0]].forget_pod(placed[1]))
                self._forgetting.add(task)
                task.add_done_callback(self._forgetting.discard)
            return Result()
        node = (pod.get("spec") or {}).get("nodeName")
        kubelet = self.kubelets.get(node or "")
        if kubelet is None:
            return Result()
        uid = pod["metadata"].get("uid", "")
        previous = self._placement.get(key)
        if previous is not None and previous[1] != uid and previous[0] in self.kubelets:
            await self.kubelets[previous[0]].forget_pod(previous[1])
        self._placement[key] = (node or "", uid)
        await kubelet.sync_pod(pod)
        return Result()


def setup_kubelet_controller(
    manager: ManagerLike, cache: Cache, kubelets: Mapping[str, ProcessKubelet], name: str = "localcluster-kubelet"
) -> Controller:
    """Register the kubelet controller: pods bound to a local node (plus their deletions) go to its kubelet."""

    def local(pod: dict[str, Any]) -> bool:
        return (pod.get("spec") or {}).get("nodeName") in kubelets

    return (
        Builder(manager)
        .named(name)
        .for_(POD, predicates=[Funcs(create=local, update=lambda o, n: local(n) or local(o), delete=local)])
        .with_options(needs_leader_election=False, skip_name_validation=True, max_concurrent_reconciles=4)
        .complete(KubeletReconciler(cache, kubelets))
    )
