"""One pure function decides a tuning Workspace's tuning status: :func:`compute_tuning_status`.

It writes only what the tuning controller owns (the workspace controller owns NodeClaimReady, NodesReady,
ResourceReady, targetNodeCount and workerNodes):

- ``JobStarted``: True once the tuning Job exists (reason ``JobStarted``); False with the reason why it cannot be
  created (``TuningConfigNotFound``, ``InvalidTuningConfig``, ``InvalidWorkspace``) or while a changed spec
  replaces the previous run (``JobRestarting``).
- ``WorkspaceSucceeded``: True when the Job completed (``JobSucceeded``); False while it runs
  (``JobRunning``, or the pod's problem such as ``Unschedulable``/``ImagePullError``) or after it failed, with
  the failing container's reason and log tail (:func:`failure_reason`).
- v1beta1 ``state``: ``Running`` / ``Succeeded`` / ``Failed`` (``Pending`` is the workspace controller's while
  the nodes are not ready).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaito.api import constants as c
from kaito.controllers.workspace.status import pod_problem
from kreconcile.conditions import get_condition, set_condition

REASON_JOB_RUNNING = "JobRunning"
REASON_JOB_RESTARTING = "JobRestarting"
REASON_CONFIG_NOT_FOUND = "TuningConfigNotFound"
REASON_INVALID_CONFIG = "InvalidTuningConfig"
REASON_INVALID_WORKSPACE = "InvalidWorkspace"
REASON_DATA_DOWNLOAD_FAILED = "DataDownloadFailed"
REASON_DATA_PULL_FAILED = "DataPullFailed"
REASON_INVALID_DATASET = "InvalidDataset"
REASON_MODEL_UNAVAILABLE = "ModelUnavailable"
REASON_TUNING_FAILED = "TuningFailed"
REASON_PUSH_AUTH_FAILED = "ImagePushAuthFailed"
REASON_PUSH_FAILED = "ImagePushFailed"
REASON_PULL_AUTH_FAILED = "ImagePullAuthFailed"
FAILURE_REASONS = frozenset({
    c.REASON_JOB_FAILED, REASON_DATA_DOWNLOAD_FAILED, REASON_DATA_PULL_FAILED, REASON_INVALID_DATASET,
    REASON_MODEL_UNAVAILABLE, REASON_TUNING_FAILED, REASON_PUSH_AUTH_FAILED, REASON_PUSH_FAILED,
    REASON_PULL_AUTH_FAILED, REASON_INVALID_CONFIG, c.REASON_CONTAINER_OOM_KILLED,
})
"""Reasons of a ``WorkspaceSucceeded=False`` that mean the run is over (state ``Failed``)."""

MESSAGE_LIMIT = 1024
"""Cap of messages that quote a log tail: longer than the 256 of pod-state messages (upstream) because the tail
is the part that says what to fix; far below metav1.Condition's 32768."""

_TUNER_EXIT_REASONS = {
    1: REASON_TUNING_FAILED,
    2: REASON_INVALID_CONFIG,
    3: REASON_INVALID_DATASET,
    4: REASON_MODEL_UNAVAILABLE,
}
"""Exit codes of ``python -m kaito.runtime.tuning`` (its module docstring) → reasons."""


@dataclass(frozen=True)
class Failure:
    """The failed container of a tuning pod: ``container`` name, ``exit_code``, kubelet ``reason`` (``Error``,
    ``OOMKilled``) and ``log_tail`` (last lines of its log, may be empty)."""

    container: str
    exit_code: int | None
    reason: str
    log_tail: str = ""


@dataclass
class TuningObserved:
    """What the tuning reconcile observed.

    Attributes:
        generation: the workspace's ``metadata.generation``.
        blocked: (reason, message) when the Job cannot be created (config missing or invalid); None otherwise.
        restarting: the previous Job (of an older spec or config) is being replaced.
        job: the tuning Job (None before it exists).
        pods: the Job's pods.
        failure: the failing container of a failed Job (None when unknown).
        output: where the adapter goes (for the success message).
    """

    generation: int | None
    blocked: tuple[str, str] | None = None
    restarting: bool = False
    job: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    failure: Failure | None = None
    output: str = "the output volume"


def _cap(message: str, limit: int = MESSAGE_LIMIT) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def job_condition(job: Mapping[str, Any], type_: str) -> bool:
    """True when the Job's condition ``type_`` (``Complete``, ``Failed``) is True."""
    cond = get_condition((job.get("status") or {}).get("conditions") or [], type_)
    return cond is not None and cond.get("status") == "True"


def failed_container(pods: Sequence[Mapping[str, Any]]) -> Failure | None:
    """The first container (init containers first, in pod order) that terminated with a non-zero exit code or
    was OOM-killed, over the newest pods first; None when no container failed."""
    ordered = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True)
    for pod in ordered:
        status = pod.get("status") or {}
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            for state in ((cs.get("state") or {}).get("terminated"), (cs.get("lastState") or {}).get("terminated")):
                if state and (state.get("exitCode") or state.get("reason") == "OOMKilled"):
                    return Failure(str(cs.get("name")), state.get("exitCode"), str(state.get("reason") or "Error"))
    return None


def summarize_log(text: str, lines: int = 5) -> str:
    """The last ``lines`` non-empty lines of a container log, JSON log events (the runtime's structlog lines)
    reduced to ``event: error`` so the message carries what to fix rather than timestamps."""
    out: list[str] = []
    for line in [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]:
        try:
            doc = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if isinstance(doc, dict) and "event" in doc:
            detail = doc.get("error") or doc.get("message") or ""
            out.append(f"{doc['event']}: {detail}" if detail else str(doc["event"]))
        else:
            out.append(line)
    return " | ".join(out)


def failure_reason(failure: Failure) -> str:
    """The condition reason for a failed container (by container role and the runtime's exit codes)."""
    if failure.reason == "OOMKilled":
        return c.REASON_CONTAINER_OOM_KILLED
    if failure.container == "data-downloader":
        return REASON_DATA_DOWNLOAD_FAILED
    if failure.container == "data-puller":
        return REASON_PULL_AUTH_FAILED if failure.exit_code == 3 else REASON_DATA_PULL_FAILED
    if failure.container == "pusher":
        return REASON_PUSH_AUTH_FAILED if failure.exit_code == 3 else REASON_PUSH_FAILED
    if failure.container == "tuner":
        if failure.exit_code == 5:  # the trainer's own push (--push-image): registry unreachable or secret rejected
            auth = any(word in failure.log_tail.lower() for word in ("credential", "401", "403", "auth"))
            return REASON_PUSH_AUTH_FAILED if auth else REASON_PUSH_FAILED
        return _TUNER_EXIT_REASONS.get(failure.exit_code or 0, REASON_TUNING_FAILED)
    return c.REASON_JOB_FAILED


def failure_message(job_name: str, failure: Failure | None, job: Mapping[str, Any]) -> str:
    """A sentence naming the failed container, its exit code and reason, and its log tail (or the Job's own
    failure message when no container status is known)."""
    if failure is None:
        cond = get_condition((job.get("status") or {}).get("conditions") or [], "Failed") or {}
        detail = cond.get("message") or cond.get("reason") or "the Job failed"
        return _cap(f"tuning Job {job_name} failed: {detail}")
    head = f"tuning Job {job_name} failed: container {failure.container} exited with code {failure.exit_code}"
    head += f" ({failure.reason})"
    if failure.reason == "OOMKilled":
        head += "; use an instance type with more memory or lower per_device_train_batch_size"
    tail = f"; log: {failure.log_tail}" if failure.log_tail else ""
    hint = f"; see `kubectl logs job/{job_name} -c {failure.container}`"
    return _cap(head + tail + hint)


def compute_tuning_status(old: Mapping[str, Any], obs: TuningObserved, now: float, job_name: str) -> dict[str, Any]:
    """The new ``status`` of a tuning workspace from ``obs`` (``old`` is not modified; other controllers'
    conditions and fields are kept as they are)."""
    status = copy.deepcopy(dict(old))
    conds: list[dict[str, Any]] = status.setdefault("conditions", [])
    gen = obs.generation

    def cond(type_: str, ok: bool, reason: str, message: str) -> None:
        set_condition(conds, type_, "True" if ok else "False", reason, _cap(message), gen, now)

    if obs.blocked is not None:
        reason, message = obs.blocked
        cond(c.COND_JOB_STARTED, False, reason, message)
        cond(c.COND_WORKSPACE_SUCCEEDED, False, reason, message)
        status["state"] = c.STATE_FAILED
        return status
    if obs.restarting or obs.job is None:
        reason = REASON_JOB_RESTARTING if obs.restarting else REASON_JOB_RUNNING
        message = (f"the spec or training config changed; replacing tuning Job {job_name}" if obs.restarting
                   else f"creating tuning Job {job_name}")
        cond(c.COND_JOB_STARTED, False, reason, message)
        cond(c.COND_WORKSPACE_SUCCEEDED, False, reason, message)
        status["state"] = c.STATE_RUNNING
        return status
    cond(c.COND_JOB_STARTED, True, c.REASON_JOB_STARTED, f"tuning Job {job_name} started")
    if job_condition(obs.job, "Complete"):
        cond(c.COND_WORKSPACE_SUCCEEDED, True, c.REASON_JOB_SUCCEEDED,
             f"tuning Job {job_name} completed; the adapter is in {obs.output}")
        status["state"] = c.STATE_SUCCEEDED
    elif job_condition(obs.job, "Failed"):
        reason = failure_reason(obs.failure) if obs.failure is not None else c.REASON_JOB_FAILED
        cond(c.COND_WORKSPACE_SUCCEEDED, False, reason, failure_message(job_name, obs.failure, obs.job))
        status["state"] = c.STATE_FAILED
    else:
        problem = pod_problem(obs.pods)
        if problem is not None:
            cond(c.COND_WORKSPACE_SUCCEEDED, False, *problem)
        else:
            cond(c.COND_WORKSPACE_SUCCEEDED, False, REASON_JOB_RUNNING,
                 f"tuning Job {job_name} is running: {_progress(obs)}")
        status["state"] = c.STATE_RUNNING
    return status


def _progress(obs: TuningObserved) -> str:
    """Where a running Job is: which container of its pod runs (init containers included: the pod stays Pending
    while they run), or that its pod has not started a container yet, with the waiting reasons (a pod whose volumes
    cannot be set up, e.g. a missing imagePushSecret, shows only here: the kubelet reports FailedMount as an
    Event)."""
    job = obs.job or {}
    for pod in obs.pods:
        status = pod.get("status") or {}
        name = (pod.get("metadata") or {}).get("name", "")
        statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        running = [str(cs.get("name")) for cs in statuses if "running" in (cs.get("state") or {})]
        if running:
            return f"its pod {name} is running container {', '.join(running)}"
        started = any("terminated" in (cs.get("state") or {}) for cs in statuses)
        if status.get("phase") in (None, "Pending") and not started:
            waiting = [f"{cs.get('name')} {((cs.get('state') or {}).get('waiting') or {}).get('reason', 'waiting')}"
                       for cs in statuses if "waiting" in (cs.get("state") or {})]
            detail = f" ({', '.join(waiting)})" if waiting else ""
            return (f"its pod {name} has not started a container yet{detail}; if it stays so, `kubectl describe "
                    f"pod {name}` shows why (e.g. a Secret or ConfigMap it mounts does not exist)")
    active = int((job.get("status") or {}).get("active") or 0)
    return "its pod is running" if active else "waiting for its pod to start"
