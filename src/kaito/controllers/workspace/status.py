"""One pure function decides a Workspace's status from what the reconcile observed: :func:`compute_status`.

Conditions (upstream Kaito's types; reasons are CamelCase causes a user can act on):

- ``NodeClaimReady`` (auto-provisioning only): every NodeClaim is Ready; else the first failing NodeClaim's
  provider reason (``NodeClaimQuotaExceeded``...) and message.
- ``NodesReady``: enough Ready nodes (with ``nvidia.com/gpu`` capacity for GPU presets).
- ``ResourceReady``: both of the above; its message carries the underlying cause, never a generic
  "not enough nodes".
- ``InferenceReady`` (inference workspaces): all workload pods Ready; else the pods' failure reason
  (``Unschedulable``, ``ImagePullError``, ``ContainerCrashLoopBackOff``, ``ContainerOOMKilled``, ``PodEvicted``,
  ``ProbeFailed``) with the pod's own message, capped at 256 characters like upstream; a crash loop leads with the
  container's termination message (the cause, e.g. "image ... is not runnable locally"), and the cap cuts the
  middle, never the closing ``see `kubectl ...``` hint.
- ``WorkspaceSucceeded`` (inference workspaces; the seed's WORKSPACEREADY column): the Service endpoint answered.
- ``WorkspaceDeleting`` while the workspace is being deleted.

The tuning controller owns ``JobStarted`` and ``WorkspaceSucceeded`` of tuning workspaces; this function leaves
them alone there.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaito.api import constants as c
from kreconcile.conditions import get_condition, is_true, set_condition

REASON_PLAN_FAILED = "InvalidWorkspace"
REASON_WAITING_FOR_RESOURCE = "ResourceNotReady"
REASON_WORKLOAD_NOT_READY = "WorkloadNotReady"
REASON_WORKLOAD_UPDATING = "WorkloadUpdating"
REASON_ENDPOINT_NOT_READY = "EndpointNotReady"
REASON_INFERENCE_NOT_READY = "InferenceNotReady"
REASON_NO_MATCHING_NODES = "NoMatchingNodes"


@dataclass
class Observed:
    """Everything :func:`compute_status` needs, gathered by the reconcile.

    Attributes:
        generation: the workspace's ``metadata.generation``.
        inference: True for inference workspaces, False for tuning.
        target_node_count: nodes needed (estimator or ``resource.count``).
        auto_provisioning: True when kaito creates NodeClaims for this workspace.
        gpu_required: the preset needs GPUs (nodes must report ``nvidia.com/gpu``).
        nodeclaims: this workspace's NodeClaims.
        nodes: the Nodes the workspace uses (bound to its NodeClaims, or the matching BYO nodes).
        workload: the StatefulSet (None before it exists).
        pods: the workload's pods.
        endpoint: (answered, message) of the Service probe; None when not probed.
        plan_error: why the workspace cannot be planned (e.g. unknown preset); None when fine.
        deleting: the workspace has a deletionTimestamp.
    """

    generation: int | None
    inference: bool
    target_node_count: int
    auto_provisioning: bool
    gpu_required: bool
    nodeclaims: Sequence[Mapping[str, Any]] = field(default_factory=list)
    nodes: Sequence[Mapping[str, Any]] = field(default_factory=list)
    workload: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = field(default_factory=list)
    endpoint: tuple[bool, str] | None = None
    plan_error: str | None = None
    deleting: bool = False


HINT_SEPARATOR = "; see `"
"""Where a message's closing hint starts (``...; see `kubectl logs pod -c container --previous```)."""


def _cap(message: str) -> str:
    """``message`` within :data:`~kaito.api.constants.CONDITION_MESSAGE_LIMIT` characters: the middle is cut
    (``...``) so a closing ``; see `kubectl ...``` hint survives whole."""
    limit = c.CONDITION_MESSAGE_LIMIT
    if len(message) <= limit:
        return message
    head, sep, hint = message.rpartition(HINT_SEPARATOR)
    tail = sep + hint if sep and len(sep + hint) <= limit // 2 else ""
    if not tail:
        head = message
    return head[: limit - len(tail) - 3].rstrip() + "..." + tail


_UID = re.compile(r"\([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\)")
_BACK_OFF = re.compile(r"back-off \S+")


def _crash_loop_message(pod: str, container: str, waiting: Mapping[str, Any], last: Mapping[str, Any]) -> str:
    """The cause first (the last termination's message: ``terminationMessagePath`` or, with
    ``FallbackToLogsOnError``, the log's tail, whose last line is the error), then the back-off without the
    kubelet's ``container=... pod=...(uid)`` noise, then where to look."""
    lines = [line.strip() for line in str(last.get("message") or "").splitlines() if line.strip()]
    waiting_message = str(waiting.get("message") or "")
    back_off = _BACK_OFF.search(waiting_message)
    retry = back_off.group(0) if back_off else _UID.sub("", waiting_message).strip()
    exit_code = f" (exit code {last.get('exitCode')})" if last else ""
    text = f"pod {pod} container {container}"
    text += f" exited{exit_code}: {lines[-1]}; CrashLoopBackOff" if lines else f" is in CrashLoopBackOff{exit_code}"
    if retry:
        text += f", {retry}"
    return f"{text}{HINT_SEPARATOR}kubectl logs {pod} -c {container} --previous`"


def node_is_ready(node: Mapping[str, Any], gpu_required: bool) -> bool:
    """Ready condition True and, for GPU presets, ``nvidia.com/gpu`` capacity above 0."""
    status = node.get("status") or {}
    if not is_true(status.get("conditions") or [], "Ready"):
        return False
    if gpu_required:
        try:
            return int(str((status.get("capacity") or {}).get(c.RESOURCE_GPU, "0"))) > 0
        except ValueError:
            return False
    return True


def nodeclaim_problem(nodeclaims: Sequence[Mapping[str, Any]], target: int) -> tuple[str, str] | None:
    """(reason, message) of the first NodeClaim that is not Ready, or of missing ones; None when all are Ready."""
    for nc in sorted(nodeclaims, key=lambda n: n["metadata"]["name"]):
        conds = (nc.get("status") or {}).get("conditions") or []
        if is_true(conds, c.NODECLAIM_READY):
            continue
        name = nc["metadata"]["name"]
        for type_ in (c.NODECLAIM_LAUNCHED, c.NODECLAIM_REGISTERED, c.NODECLAIM_INITIALIZED, c.NODECLAIM_READY):
            cond = get_condition(conds, type_)
            if cond is not None and cond.get("status") == "False":
                reason = str(cond.get("reason") or "NotReady")
                if not reason.startswith("NodeClaim"):
                    reason = "NodeClaim" + reason
                return reason, _cap(f"NodeClaim {name}: {cond.get('message') or reason}")
        return c.REASON_NODECLAIM_NOT_READY, f"NodeClaim {name} is launching"
    ready = sum(1 for nc in nodeclaims if is_true((nc.get("status") or {}).get("conditions") or [], "Ready"))
    if ready < target:
        return c.REASON_NODECLAIM_NOT_READY, f"{ready}/{target} NodeClaims are Ready"
    return None


def pod_problem(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The most telling failure among ``pods`` as (reason, message), or None when none is failing."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if status.get("phase") == "Failed" and status.get("reason") == "Evicted":
            return c.REASON_POD_EVICTED, _cap(f"pod {name} was evicted: {status.get('message', '')}")
        sched = get_condition(status.get("conditions") or [], "PodScheduled")
        if sched is not None and sched.get("status") == "False" and sched.get("reason") == "Unschedulable":
            return c.REASON_UNSCHEDULABLE, _cap(f"pod {name}: {sched.get('message', '')}")
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            current = (cs.get("state") or {}).get("terminated") or {}
            reason = waiting.get("reason")
            if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                return c.REASON_IMAGE_PULL_ERROR, _cap(
                    f"pod {name} container {cs.get('name')}: {reason}: {waiting.get('message', '')}".rstrip(": ")
                )
            if "OOMKilled" in (last.get("reason"), current.get("reason")):
                return c.REASON_CONTAINER_OOM_KILLED, _cap(
                    f"pod {name} container {cs.get('name')} was OOMKilled; use an instance type with more memory"
                )
            running = (cs.get("state") or {}).get("running")
            restarts = int(cs.get("restartCount") or 0)
            if running is not None and cs.get("started") is True and cs.get("ready") is False and restarts:
                # it loaded once (startup probe passed) but is not Ready and has been restarted: its liveness and
                # readiness probes (the same GET /health) keep failing. A fresh start is not reported.
                return c.REASON_PROBE_FAILED, _cap(
                    f"pod {name} container {cs.get('name')} fails its health probes (GET {c.HEALTH_PATH} on port "
                    f"{c.RUNTIME_PORT}) and was restarted {restarts} time(s); see `kubectl describe pod {name}`"
                )
            if reason == "CrashLoopBackOff":
                return c.REASON_CRASH_LOOP_BACKOFF, _cap(_crash_loop_message(name, str(cs.get("name")), waiting, last))
    return None


def _workload_ready(workload: Mapping[str, Any] | None, target: int) -> tuple[bool, str]:
    if workload is None:
        return False, "the inference StatefulSet has not been created yet"
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    replicas = int(spec.get("replicas", target) or 0)
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas", replicas) or 0)
    observed = status.get("observedGeneration")
    generation = (workload.get("metadata") or {}).get("generation")
    if observed is not None and generation is not None and observed < generation:
        return False, "the inference StatefulSet is rolling out a new revision"
    if ready >= replicas > 0 and updated >= replicas:
        return True, f"{ready}/{replicas} inference pods are ready"
    return False, f"{ready}/{replicas} inference pods are ready"


def compute_status(old: Mapping[str, Any], obs: Observed, now: float) -> dict[str, Any]:
    """The new ``status`` of a workspace from ``obs``; ``old`` is the current status (not modified).

    Condition timestamps change only when a condition's status flips (``kreconcile.conditions``).
    """
    status = copy.deepcopy(dict(old))
    conds: list[dict[str, Any]] = status.setdefault("conditions", [])
    gen = obs.generation

    def cond(type_: str, ok: bool, reason: str, message: str) -> None:
        set_condition(conds, type_, "True" if ok else "False", reason, _cap(message), gen, now)

    if obs.deleting:
        cond(c.COND_WORKSPACE_DELETING, True, c.REASON_DELETING, "deleting the workspace's NodeClaims and workload")
        return status

    status["targetNodeCount"] = obs.target_node_count
    if obs.plan_error is not None:
        cond(c.COND_RESOURCE_READY, False, REASON_PLAN_FAILED, obs.plan_error)
        if obs.inference:
            cond(c.COND_INFERENCE_READY, False, REASON_PLAN_FAILED, obs.plan_error)
            cond(c.COND_WORKSPACE_SUCCEEDED, False, REASON_PLAN_FAILED, obs.plan_error)
            status["state"] = c.STATE_FAILED
        return status

    ready_nodes = sorted(n["metadata"]["name"] for n in obs.nodes if node_is_ready(n, obs.gpu_required))
    status["workerNodes"] = ready_nodes
    resource_problem: tuple[str, str] | None = None
    if obs.auto_provisioning:
        problem = nodeclaim_problem(obs.nodeclaims, obs.target_node_count)
        if problem is None:
            cond(c.COND_NODECLAIM_READY, True, c.NODECLAIM_READY,
                 f"{obs.target_node_count} NodeClaim(s) are Ready")
        else:
            cond(c.COND_NODECLAIM_READY, False, *problem)
            resource_problem = problem
    if len(ready_nodes) >= obs.target_node_count:
        cond(c.COND_NODES_READY, True, "NodesReady", f"{len(ready_nodes)} node(s) ready: {', '.join(ready_nodes)}")
    else:
        if obs.auto_provisioning:
            msg = f"{len(ready_nodes)}/{obs.target_node_count} nodes are Ready"
            reason = c.REASON_NODES_NOT_READY
        else:
            gpu = " with nvidia.com/gpu capacity" if obs.gpu_required else ""
            msg = (f"{len(ready_nodes)}/{obs.target_node_count} Ready nodes{gpu} match resource.labelSelector"
                   f"{' and resource.preferredNodes' if obs.nodes else ''}; label more nodes or lower resource.count")
            reason = REASON_NO_MATCHING_NODES
        cond(c.COND_NODES_READY, False, reason, msg)
        resource_problem = resource_problem or (reason, msg)
    if resource_problem is None:
        cond(c.COND_RESOURCE_READY, True, c.REASON_RESOURCE_READY, "the workspace's nodes are ready")
    else:
        cond(c.COND_RESOURCE_READY, False, *resource_problem)

    if not obs.inference:
        if resource_problem is not None and status.get("state") not in (c.STATE_SUCCEEDED, c.STATE_FAILED):
            status["state"] = c.STATE_PENDING
        return status

    if resource_problem is not None:
        cond(c.COND_INFERENCE_READY, False, REASON_WAITING_FOR_RESOURCE, "waiting for the workspace's nodes")
        cond(c.COND_WORKSPACE_SUCCEEDED, False, REASON_WAITING_FOR_RESOURCE, resource_problem[1])
        status["state"] = c.STATE_PENDING
        return status
    ready, detail = _workload_ready(obs.workload, obs.target_node_count)
    if ready:
        cond(c.COND_INFERENCE_READY, True, c.REASON_INFERENCE_READY, detail)
    else:
        problem = pod_problem(obs.pods) or (REASON_WORKLOAD_NOT_READY, detail)
        cond(c.COND_INFERENCE_READY, False, *problem)
    if not ready:
        cond(c.COND_WORKSPACE_SUCCEEDED, False, REASON_INFERENCE_NOT_READY, "the inference pods are not ready")
        status["state"] = c.STATE_NOT_READY
    elif obs.endpoint is not None and obs.endpoint[0]:
        cond(c.COND_WORKSPACE_SUCCEEDED, True, c.REASON_WORKSPACE_READY, obs.endpoint[1])
        status["state"] = c.STATE_READY
    else:
        msg = obs.endpoint[1] if obs.endpoint is not None else "the inference Service has not been probed yet"
        cond(c.COND_WORKSPACE_SUCCEEDED, False, REASON_ENDPOINT_NOT_READY, msg)
        status["state"] = c.STATE_NOT_READY
    return status
