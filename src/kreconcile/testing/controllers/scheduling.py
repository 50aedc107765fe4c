"""The scheduler as a controller: binds pending pods to Nodes through ``pods/binding``.

Decisions are :func:`kreconcile.testing.scheduler.schedule` (filters, scoring, the FitError message). A pod is
considered when ``spec.nodeName`` is empty, it is not being deleted and its ``schedulerName`` is
``default-scheduler`` (or unset). No node fits → the pod's ``PodScheduled`` condition becomes ``False`` with
reason ``Unschedulable`` and the FitError message, plus a ``FailedScheduling`` event, as kube-scheduler does; it is
retried when a Node is added or changes, or a bound pod finishes or goes away (what frees capacity).

Binds are remembered ("assumed", as kube-scheduler's cache does) until the informer shows them, so two pods
scheduled back to back never both take the last GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from kreconcile.builder import Builder, ManagerLike
from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.clock import Clock, RealClock
from kreconcile.controller import Controller
from kreconcile.errors import Conflict, NotFound
from kreconcile.events import EventRecorder
from kreconcile.predicates import Funcs
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import NODE, POD, is_deleting, is_terminal, with_kind
from kreconcile.testing.kubelet.status import rfc3339
from kreconcile.testing.scheduler import schedule

log = structlog.get_logger("kreconcile.testing.scheduler")

SCHEDULER_NAME = "default-scheduler"


def wants_scheduling(pod: dict[str, Any]) -> bool:
    """Unbound, not deleting, not finished, and for the default scheduler."""
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and not is_deleting(pod)
        and not is_terminal(pod)
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
    )


class SchedulerReconciler:
    """Schedules one pending pod per reconcile (see module docstring)."""

    def __init__(self, client: Client, cache: Cache, recorder: EventRecorder | None = None,
                 clock: Clock | None = None) -> None:
        self.client = client
        self.cache = cache
        self.recorder = recorder
        self.clock = clock or RealClock()
        self._assumed: dict[str, tuple[dict[str, Any], str]] = {}

    async def reconcile(self, request: Request) -> Result:
        try:
            pod = with_kind(await self.cache.get(POD, request.name, request.namespace), POD)
        except NotFound:
            return Result()
        if not wants_scheduling(pod):
            return Result()
        uid = pod["metadata"].get("uid", "")
        if uid in self._assumed:
            return Result(requeue_after=0.5)  # bound; waiting for the cache to show it
        nodes = await self.cache.list(NODE)
        pods = await self.cache.list(POD)
        seen = {p["metadata"].get("uid"): p for p in pods}
        for assumed_uid in list(self._assumed):
            cached = seen.get(assumed_uid)
            if cached is None or (cached.get("spec") or {}).get("nodeName"):
                del self._assumed[assumed_uid]
        bound = [p for p in pods if (p.get("spec") or {}).get("nodeName")]
        for assumed_pod, node_name in self._assumed.values():
            bound.append({**assumed_pod, "spec": {**assumed_pod.get("spec", {}), "nodeName": node_name}})
        result = schedule(pod, nodes, bound)
        if result.node is not None:
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": request.name, "namespace": request.namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": result.node},
            }
            try:
                await self.client.request(
                    "POST", f"/api/v1/namespaces/{request.namespace}/pods/{request.name}/binding", body=binding
                )
            except (NotFound, Conflict):
                return Result()
            self._assumed[uid] = (pod, result.node)
            log.info("pod_scheduled", namespace=request.namespace, name=request.name, node=result.node)
            if self.recorder is not None:
                self.recorder.event(pod, "Normal", "Scheduled",
                                    f"Successfully assigned {request.namespace}/{request.name} to {result.node}",
                                    "Binding")
            return Result()
        await self._mark_unschedulable(pod, result.message)
        return Result()

    async def _mark_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        conditions = [dict(c) for c in (pod.get("status") or {}).get("conditions") or []]
        existing = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if existing and existing.get("status") == "False" and existing.get("message") == message:
            return
        now = rfc3339(self.clock.wall())
        new = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
               "lastProbeTime": None,
               "lastTransitionTime": existing.get("lastTransitionTime", now)
               if existing and existing.get("status") == "False" else now}
        conditions = [c for c in conditions if c.get("type") != "PodScheduled"] + [new]
        try:
            await self.client.status().patch(pod, {"status": {"phase": "Pending", "conditions": conditions}})
        except NotFound:
            return
        if self.recorder is not None:
            self.recorder.event(pod, "Warning", "FailedScheduling", message, "Scheduling")


def _pending_pods(cache: Cache) -> Iterable[Request]:
    informer = cache.get_informer(POD)
    return [Request.for_object(p) for p in informer.list() if wants_scheduling(p)]


def _frees_capacity_on_update(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool((new.get("spec") or {}).get("nodeName")) and not is_terminal(old) and is_terminal(new)


def setup_scheduler(
    manager: ManagerLike, client: Client, cache: Cache, recorder: EventRecorder | None = None,
    clock: Clock | None = None,
) -> Controller:
    """Register the scheduler: ``for_`` pending Pods; Node events and freed capacity re-queue every pending pod."""
    return (
        Builder(manager)
        .named("localcluster-scheduler")
        .for_(POD, predicates=[Funcs(create=wants_scheduling, update=lambda _o, n: wants_scheduling(n),
                                     delete=lambda _o: False)])
        .watches(NODE, lambda _node: _pending_pods(cache))
        .watches(POD, lambda _pod: _pending_pods(cache),
                 predicates=[Funcs(create=lambda _o: False, update=_frees_capacity_on_update,
                                   delete=lambda o: bool((o.get("spec") or {}).get("nodeName")))])
        .with_options(needs_leader_election=False, skip_name_validation=True)
        .complete(SchedulerReconciler(client, cache, recorder, clock))
    )
