"""Job → Pods with ``parallelism``, ``completions`` and ``backoffLimit``, and the ``Complete``/``Failed`` conditions.

As kube-controller-manager's Job controller:

* pods ``<job>-<random>`` with labels ``batch.kubernetes.io/job-name``, ``job-name``,
  ``batch.kubernetes.io/controller-uid`` and ``controller-uid``;
* up to ``min(parallelism, completions - succeeded)`` active pods (``parallelism`` default 1, ``completions``
  default 1; with ``completions`` unset and ``parallelism`` set, the Job completes when any pod succeeded and
  none is active);
* failures are counted from failed pods (and, for ``restartPolicy: OnFailure`` templates, container restarts);
  new pods after a failure wait the pod-failure back-off: 10 s doubling, capped at 6 minutes
  (``DefaultJobPodFailureBackOff``/``MaxJobPodFailureBackOff``; scaled by :attr:`JobReconciler.backoff_base_s`);
* more failures than ``backoffLimit`` (default 6) → active pods deleted, conditions ``FailureTarget`` and
  ``Failed`` with reason ``BackoffLimitExceeded``, message ``Job has reached the specified backoff limit``;
  ``activeDeadlineSeconds`` exceeded → reason ``DeadlineExceeded``;
* enough successes → conditions ``SuccessCriteriaMet`` and ``Complete``, ``completionTime`` set;
* ``completionMode: Indexed``: each pod gets a completion index in ``[0, completions)`` (annotation and label
  ``batch.kubernetes.io/job-completion-index``, env ``JOB_COMPLETION_INDEX``, hostname ``<job>-<index>``, name
  ``<job>-<index>-<random>``); a failed index is retried; succeeded = distinct succeeded indexes, listed in
  ``status.completedIndexes`` (``"0-2,4"``);
* status ``active``, ``ready``, ``succeeded``, ``failed``, ``terminating``, ``startTime``,
  ``uncountedTerminatedPods``.

Not done: ``podFailurePolicy``, ``backoffLimitPerIndex``, ``suspend``, ``ttlSecondsAfterFinished``.
"""

from __future__ import annotations

import datetime
from typing import Any

from kreconcile.builder import Builder, ManagerLike
from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.clock import Clock, RealClock
from kreconcile.controller import Controller
from kreconcile.errors import NotFound, ignore_not_found
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import (
    JOB,
    POD,
    Expectations,
    is_deleting,
    is_ready,
    name_of,
    owned_pods,
    phase,
    pod_from_template,
    set_workload_condition,
    status_patch,
    with_kind,
)
from kreconcile.testing.kubelet.status import rfc3339

DEFAULT_BACKOFF_LIMIT = 6
"""``spec.backoffLimit`` when unset (the API default)."""
JOB_BACKOFF_BASE_S = 10.0
"""First pod-failure back-off, seconds (``DefaultJobPodFailureBackOff``)."""
JOB_BACKOFF_MAX_S = 360.0
"""Back-off cap, seconds (``MaxJobPodFailureBackOff``, 6 minutes)."""


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def _finished_at(pod: dict[str, Any]) -> float | None:
    times = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        t = _parse_time(term.get("finishedAt"))
        if t is not None:
            times.append(t)
    return max(times) if times else None


INDEX_KEY = "batch.kubernetes.io/job-completion-index"
"""Annotation and label carrying an Indexed Job pod's completion index (also its ``JOB_COMPLETION_INDEX`` env)."""


def completion_index(pod: dict[str, Any]) -> int | None:
    """An Indexed Job pod's completion index (annotation ``batch.kubernetes.io/job-completion-index``), or None."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_KEY)
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def format_indexes(indexes: list[int]) -> str:
    """``status.completedIndexes``: sorted indexes with runs compressed (``[0, 1, 2, 5]`` → ``"0-2,5"``)."""
    parts: list[str] = []
    start = prev = None
    for i in sorted(set(indexes)):
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(parts)


class JobReconciler:
    """Runs a Job's pods to completion or failure and writes its status.

    ``backoff_base_s`` is the first pod-failure back-off (10 s upstream); LocalCluster tests lower it.
    """

    def __init__(self, client: Client, cache: Cache, clock: Clock | None = None,
                 backoff_base_s: float = JOB_BACKOFF_BASE_S) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock or RealClock()
        self.backoff_base_s = backoff_base_s
        self.expectations = Expectations()

    async def reconcile(self, request: Request) -> Result:
        try:
            job = with_kind(await self.cache.get(JOB, request.name, request.namespace), JOB)
        except NotFound:
            self.expectations.forget(str(request))
            return Result()
        if is_deleting(job):
            return Result()
        key = str(request)
        pods = owned_pods(await self.cache.list(POD, request.namespace), job)
        if not self.expectations.satisfied(key, pods):
            return Result(requeue_after=0.2)
        spec = job.get("spec") or {}
        old_status = job.get("status") or {}
        conditions = [dict(c) for c in old_status.get("conditions") or []]
        finished = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)
        active = [p for p in pods if phase(p) not in ("Succeeded", "Failed") and not is_deleting(p)]
        terminating = [p for p in pods if is_deleting(p) and phase(p) not in ("Succeeded", "Failed")]
        indexed = spec.get("completionMode") == "Indexed"
        done_indexes = sorted({i for p in pods if phase(p) == "Succeeded" and (i := completion_index(p)) is not None})
        succeeded = len(done_indexes) if indexed else sum(1 for p in pods if phase(p) == "Succeeded")
        failed_pods = [p for p in pods if phase(p) == "Failed"]
        failed = len(failed_pods)
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure":
            failed += sum(
                int(cs.get("restartCount", 0))
                for p in active for cs in (p.get("status") or {}).get("containerStatuses") or []
            )
        succeeded = max(succeeded, int(old_status.get("succeeded", 0)))
        failed = max(failed, int(old_status.get("failed", 0)))
        now_wall = self.clock.wall()
        now = rfc3339(now_wall)
        start_time = old_status.get("startTime") or now
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))
        backoff_limit = int(spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
        requeue: float | None = None
        completion_time = old_status.get("completionTime")
        if not finished:
            deadline = spec.get("activeDeadlineSeconds")
            started = _parse_time(start_time) or now_wall
            fail_reason = ""
            if failed > backoff_limit:
                fail_reason, fail_message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            elif deadline is not None and now_wall - started >= float(deadline):
                fail_reason, fail_message = "DeadlineExceeded", "Job was active longer than specified deadline"
            elif deadline is not None:
                requeue = max(0.1, started + float(deadline) - now_wall)
            done = (succeeded >= int(completions)) if completions is not None else (succeeded > 0 and not active)
            if fail_reason:
                for pod in active:
                    await self._delete(key, pod)
                active = []
                set_workload_condition(conditions, "FailureTarget", "True", fail_reason, fail_message, now)
                set_workload_condition(conditions, "Failed", "True", fail_reason, fail_message, now)
            elif done:
                for pod in active:
                    await self._delete(key, pod)
                active = []
                set_workload_condition(conditions, "SuccessCriteriaMet", "True", "CompletionsReached",
                                       "Reached expected number of succeeded pods", now)
                set_workload_condition(conditions, "Complete", "True", "CompletionsReached",
                                       "Reached expected number of succeeded pods", now)
                completion_time = now
            else:
                remaining = (int(completions) - succeeded) if completions is not None else parallelism
                want = max(0, min(parallelism, remaining))
                if len(active) < want:
                    wait = self._backoff_remaining(failed, failed_pods, now_wall)
                    if wait > 0:
                        requeue = wait if requeue is None else min(requeue, wait)
                    else:
                        busy = {completion_index(p) for p in active} | set(done_indexes)
                        free = [i for i in range(int(completions or 0)) if i not in busy] if indexed else []
                        for n in range(want - len(active)):
                            if indexed and n >= len(free):
                                break
                            created = await self.client.create(self._pod(job, free[n] if indexed else None))
                            self.expectations.created(key, name_of(created))
                            active.append(created)
                elif len(active) > want:
                    for pod in active[want:]:
                        await self._delete(key, pod)
                    active = active[:want]
        status: dict[str, Any] = {
            "startTime": start_time,
            "active": len(active),
            "ready": sum(1 for p in active if is_ready(p)),
            "succeeded": succeeded,
            "failed": failed,
            "terminating": len(terminating),
            "uncountedTerminatedPods": {},
            **({"completedIndexes": format_indexes(done_indexes)} if indexed and done_indexes else {}),
            "conditions": conditions,
        }
        if completion_time:
            status["completionTime"] = completion_time
        for field in ("active", "succeeded", "failed"):
            if status[field] == 0:
                del status[field]
        if not conditions:
            del status["conditions"]
        if status != old_status:
            await ignore_not_found(self.client.status().patch(job, status_patch(old_status, status)))
        return Result(requeue_after=requeue) if requeue else Result()

    def _backoff_remaining(self, failed: int, failed_pods: list[dict[str, Any]], now_wall: float) -> float:
        if failed <= 0:
            return 0.0
        delay = min(self.backoff_base_s * 2 ** (failed - 1), JOB_BACKOFF_MAX_S)
        last = max((t for t in (_finished_at(p) for p in failed_pods) if t is not None), default=None)
        if last is None:
            return 0.0
        return max(0.0, last + delay - now_wall)

    def _pod(self, job: dict[str, Any], index: int | None = None) -> dict[str, Any]:
        name, uid = name_of(job), job["metadata"].get("uid", "")
        labels = {
            "batch.kubernetes.io/job-name": name,
            "job-name": name,
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
        }
        if index is not None:
            labels[INDEX_KEY] = str(index)
        pod = pod_from_template((job.get("spec") or {}).get("template") or {}, job,
                                generate_name=f"{name}-" if index is None else f"{name}-{index}-", labels=labels)
        if index is not None:
            pod["metadata"].setdefault("annotations", {})[INDEX_KEY] = str(index)
            pod["spec"].setdefault("hostname", f"{name}-{index}")
            ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}
            for container in [*pod["spec"].get("containers", []), *pod["spec"].get("initContainers", [])]:
                env = container.setdefault("env", [])
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                    env.insert(0, {"name": "JOB_COMPLETION_INDEX", "valueFrom": ref})
        return pod

    async def _delete(self, key: str, pod: dict[str, Any]) -> None:
        self.expectations.deleted(key, name_of(pod))
        await ignore_not_found(self.client.delete(with_kind(pod, POD)))


def setup_job_controller(
    manager: ManagerLike, client: Client, cache: Cache, clock: Clock | None = None,
    backoff_base_s: float = JOB_BACKOFF_BASE_S,
) -> Controller:
    """Register the Job controller (``for_`` Job, ``owns`` Pod) with ``manager``."""
    return (
        Builder(manager)
        .named("localcluster-job")
        .for_(JOB)
        .owns(POD)
        .with_options(needs_leader_election=False, skip_name_validation=True)
        .complete(JobReconciler(client, cache, clock, backoff_base_s))
    )
