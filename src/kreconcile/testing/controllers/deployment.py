"""Deployment → Pods, without the ReplicaSet level.

What matches kube-controller-manager: pods carry ``pod-template-hash`` (a hash of ``spec.template``) and are named
``<deployment>-<hash>-<random>``; ``Recreate`` deletes every old pod before creating new ones; ``RollingUpdate``
creates the new pods, then deletes old ones only while ``readyReplicas`` stays at or above ``replicas -
maxUnavailable`` (default 25 %, rounded down); failed or succeeded pods are deleted and replaced; status
``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``, ``unavailableReplicas``,
``observedGeneration`` and the ``Available``/``Progressing`` conditions with the upstream reasons
(``MinimumReplicasAvailable``, ``NewReplicaSetAvailable``, ``ReplicaSetUpdated``, ``DeploymentPaused``); a paused
Deployment's pods are left alone.

Differences (documented in ``docs/local-cluster.md``): no ReplicaSet objects, so no rollout history or
``kubectl rollout undo``; ``maxSurge`` is not limited (all new pods are created at once); ``minReadySeconds`` and
``progressDeadlineSeconds`` are ignored; orphan pods matching the selector are not adopted.
"""

from __future__ import annotations

import math
from typing import Any

import structlog

from kreconcile.builder import Builder, ManagerLike
from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.clock import Clock, RealClock
from kreconcile.controller import Controller
from kreconcile.errors import NotFound, ignore_not_found
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import (
    DEPLOYMENT,
    POD,
    Expectations,
    is_active,
    is_deleting,
    is_ready,
    is_terminal,
    name_of,
    owned_pods,
    pod_from_template,
    safe_hash,
    set_workload_condition,
    status_patch,
    with_kind,
)
from kreconcile.testing.kubelet.status import rfc3339

log = structlog.get_logger("kreconcile.testing.controllers.deployment")

TEMPLATE_HASH_LABEL = "pod-template-hash"


def max_unavailable(deployment: dict[str, Any], replicas: int) -> int:
    """``spec.strategy.rollingUpdate.maxUnavailable`` as a pod count (int or percentage rounded down; default 25 %)."""
    rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    raw = rolling.get("maxUnavailable", "25%")
    if isinstance(raw, str) and raw.endswith("%"):
        return math.floor(replicas * int(raw[:-1]) / 100)
    return int(raw)


class DeploymentReconciler:
    """Keeps ``spec.replicas`` pods of the current template, then writes the Deployment's status."""

    def __init__(self, client: Client, cache: Cache, clock: Clock | None = None) -> None:
        self.client = client
        self.cache = cache
        self.clock = clock or RealClock()
        self.expectations = Expectations()

    async def reconcile(self, request: Request) -> Result:
        try:
            deployment = with_kind(await self.cache.get(DEPLOYMENT, request.name, request.namespace), DEPLOYMENT)
        except NotFound:
            self.expectations.forget(str(request))
            return Result()
        if is_deleting(deployment):
            return Result()
        key = str(request)
        pods = owned_pods(await self.cache.list(POD, request.namespace), deployment)
        if not self.expectations.satisfied(key, pods):
            return Result(requeue_after=0.2)
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        template_hash = safe_hash(template)
        name = name_of(deployment)
        for pod in pods:
            if is_terminal(pod) and not is_deleting(pod):
                await self._delete(key, pod)
        live = [p for p in pods if is_active(p)]
        new = [p for p in live if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == template_hash]
        old = [p for p in live if p not in new]
        strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
        unavailable_ok = max_unavailable(deployment, replicas)
        if spec.get("paused"):
            pass  # a paused Deployment's pods are left as they are; only its status is kept current
        elif strategy == "Recreate" and old:
            for pod in old:
                await self._delete(key, pod)
        elif strategy == "Recreate" and any(is_deleting(p) for p in pods):
            pass  # wait for the old pods to be gone before starting new ones
        else:
            missing = replicas - len(new)
            for _ in range(missing):
                pod = pod_from_template(
                    template, deployment, generate_name=f"{name}-{template_hash}-",
                    labels={TEMPLATE_HASH_LABEL: template_hash},
                )
                created = await self.client.create(pod)
                self.expectations.created(key, name_of(created))
            if missing < 0:
                surplus = sorted(new, key=lambda p: (is_ready(p), p["metadata"].get("creationTimestamp", "")))
                for pod in surplus[:-missing]:
                    await self._delete(key, pod)
            ready_now = sum(1 for p in live if is_ready(p))
            budget = ready_now - (replicas - unavailable_ok)
            for pod in sorted(old, key=is_ready):
                if not is_ready(pod):
                    await self._delete(key, pod)
                elif budget > 0:
                    budget -= 1
                    await self._delete(key, pod)
        await self._write_status(deployment, pods, template_hash, replicas, unavailable_ok)
        return Result()

    async def _delete(self, key: str, pod: dict[str, Any]) -> None:
        self.expectations.deleted(key, name_of(pod))
        await ignore_not_found(self.client.delete(with_kind(pod, POD)))

    async def _write_status(
        self, deployment: dict[str, Any], pods: list[dict[str, Any]], template_hash: str, replicas: int,
        unavailable_ok: int,
    ) -> None:
        live = [p for p in pods if is_active(p)]
        updated = [p for p in live if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == template_hash]
        ready = sum(1 for p in live if is_ready(p))
        old_status = deployment.get("status") or {}
        status: dict[str, Any] = {
            "observedGeneration": (deployment.get("metadata") or {}).get("generation", 1),
            "replicas": len(live),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, replicas - ready),
            "conditions": [dict(c) for c in old_status.get("conditions") or []],
        }
        now = rfc3339(self.clock.wall())
        rs_name = f"{name_of(deployment)}-{template_hash}"
        if ready >= replicas - unavailable_ok:
            set_workload_condition(status["conditions"], "Available", "True", "MinimumReplicasAvailable",
                                   "Deployment has minimum availability.", now)
        else:
            set_workload_condition(status["conditions"], "Available", "False", "MinimumReplicasUnavailable",
                                   "Deployment does not have minimum availability.", now)
        if (deployment.get("spec") or {}).get("paused"):
            set_workload_condition(status["conditions"], "Progressing", "Unknown", "DeploymentPaused",
                                   "Deployment is paused", now)
        elif len(updated) == replicas == ready and len(live) == replicas:
            set_workload_condition(status["conditions"], "Progressing", "True", "NewReplicaSetAvailable",
                                   f'ReplicaSet "{rs_name}" has successfully progressed.', now)
        else:
            set_workload_condition(status["conditions"], "Progressing", "True", "ReplicaSetUpdated",
                                   f'ReplicaSet "{rs_name}" is progressing.', now)
        for field in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas"):
            if status[field] == 0:
                del status[field]  # the API omits zero counts (omitempty)
        if status != old_status:
            await ignore_not_found(self.client.status().patch(deployment, status_patch(old_status, status)))


def setup_deployment_controller(
    manager: ManagerLike, client: Client, cache: Cache, clock: Clock | None = None
) -> Controller:
    """Register the Deployment controller (``for_`` Deployment, ``owns`` Pod) with ``manager``."""
    return (
        Builder(manager)
        .named("localcluster-deployment")
        .for_(DEPLOYMENT)
        .owns(POD)
        .with_options(needs_leader_election=False, skip_name_validation=True)
        .complete(DeploymentReconciler(client, cache, clock))
    )
