"""Pod status from container states: phase, conditions, QoS class. Pure functions, no I/O.

Phase follows the kubelet's ``getPhase`` (``pkg/kubelet/kubelet_pods.go``); conditions are ``PodScheduled``,
``Initialized``, ``ContainersReady`` and ``Ready`` with the kubelet's reasons (``ContainersNotInitialized``,
``ContainersNotReady``, ``PodCompleted``) and messages (``containers with unready status: [a b]``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kreconcile.testing.kubelet.quantity import parse_quantity


def rfc3339(wall: float) -> str:
    """Epoch seconds → ``2026-01-01T00:00:00Z`` (RFC 3339, whole seconds, as the API server writes times)."""
    return datetime.datetime.fromtimestamp(int(wall), tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    """What the kubelet knows about one container; :meth:`to_status` renders a ``ContainerStatus``.

    ``state`` is exactly one of ``{"waiting": {...}}``, ``{"running": {...}}``, ``{"terminated": {...}}``.
    """

    name: str
    image: str
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def to_status(self) -> dict[str, Any]:
        """The ``v1.ContainerStatus`` dict."""
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": f"local://{self.image}" if self.container_id else "",
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> dict[str, Any] | None:
        return self.state.get("terminated")


def pod_phase(
    restart_policy: str,
    init: Sequence[ContainerRecord],
    containers: Sequence[ContainerRecord],
) -> str:
    """The pod phase from its containers (the kubelet's ``getPhase``).

    Init containers: any that failed under ``restartPolicy: Never`` → ``Failed``; any not yet completed →
    ``Pending``. Then: a container waiting without a previous termination → ``Pending``; any running → ``Running``;
    all stopped → ``Running`` for ``Always``, ``Succeeded`` when all exited 0, ``Failed`` for ``Never``, and
    ``Running`` (still restarting) for ``OnFailure``.
    """
    for record in init:
        term = record.terminated
        if term is not None and term.get("exitCode") == 0:
            continue
        if restart_policy == "Never" and term is not None:
            return "Failed"
        return "Pending"
    running = stopped = succeeded = waiting = 0
    for record in containers:
        if record.running:
            running += 1
        elif record.terminated is not None:
            stopped += 1
            if record.terminated.get("exitCode") == 0:
                succeeded += 1
        elif record.last_state.get("terminated") is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    if restart_policy == "Never":
        return "Failed"
    return "Running"


def qos_class(pod: Mapping[str, Any]) -> str:
    """``Guaranteed`` (every container has cpu and memory limits equal to requests), ``BestEffort`` (no requests
    or limits anywhere), else ``Burstable`` (``pkg/apis/core/helper/qos``)."""
    spec = pod.get("spec") or {}
    all_containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    any_set = False
    guaranteed = True
    for container in all_containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits:
                guaranteed = False
            elif name in requests and parse_quantity(requests[name]) != parse_quantity(limits[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _condition(
    ctype: str, ok: bool, previous: Mapping[str, Mapping[str, Any]], now: str, reason: str = "", message: str = ""
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(ctype)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": since or now}
    if not ok and reason:
        cond["reason"] = reason
    if not ok and message:
        cond["message"] = message
    if ok and reason == "PodCompleted":
        cond["reason"] = reason
    return cond


def pod_conditions(
    phase: str,
    init: Sequence[ContainerRecord],
    containers: Sequence[ContainerRecord],
    previous: Sequence[Mapping[str, Any]],
    now: str,
) -> list[dict[str, Any]]:
    """``PodScheduled`` (kept True: the pod is on this node), ``Initialized``, ``ContainersReady``, ``Ready``.

    ``lastTransitionTime`` is carried over from ``previous`` while a condition's status is unchanged.
    """
    prev = {c.get("type", ""): c for c in previous}
    pending_init = [r.name for r in init if not (r.terminated is not None and r.terminated.get("exitCode") == 0)]
    if phase == "Succeeded":
        pending_init = []
    unready = [r.name for r in containers if not r.ready]
    completed = phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if completed else "ContainersNotReady"
    ready_message = "" if completed else f"containers with unready status: [{' '.join(unready)}]"
    return [
        _condition("PodScheduled", True, prev, now),
        _condition(
            "Initialized",
            not pending_init,
            prev,
            now,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        _condition("ContainersReady", not unready, prev, now, ready_reason, ready_message),
        _condition("Ready", not unready, prev, now, ready_reason, ready_message),
    ]
