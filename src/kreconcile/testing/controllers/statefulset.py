"""StatefulSet → ordered Pods ``<name>-0 .. <name>-(n-1)``.

As kube-controller-manager's StatefulSet controller:

* pod ``<name>-<i>`` gets ``spec.hostname = <name>-<i>``, ``spec.subdomain = spec.serviceName``, the labels
  ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and ``controller-revision-hash``
  (``<name>-<hash of spec.template>``);
* ``podManagementPolicy: OrderedReady`` (default): pod *i* is created only when pods 0..i-1 are Running and Ready;
  scale-down deletes the highest ordinal first, one at a time, waiting until it is gone;
  ``Parallel``: all creations and deletions at once;
* ``volumeClaimTemplates``: a PersistentVolumeClaim ``<template>-<name>-<i>`` per pod (kept after scale-down, as
  the default ``persistentVolumeClaimRetentionPolicy`` ``Retain``), mounted as a ``persistentVolumeClaim`` volume;
* ``updateStrategy: RollingUpdate`` (default): when all pods are Ready, the highest-ordinal pod of an old revision is
  deleted and recreated at the new one; ``OnDelete``: only pods you delete get the new template;
* failed or succeeded pods are deleted and recreated under the same name;
* status ``replicas``, ``readyReplicas``, ``availableReplicas``, ``currentReplicas``, ``updatedReplicas``,
  ``currentRevision``, ``updateRevision``, ``observedGeneration``, ``collisionCount``.

Not done: ControllerRevision objects (the revision is only the hash label), ``partition``, ``minReadySeconds``,
``ordinals.start``.
"""

from __future__ import annotations

import copy
from typing import Any

from kreconcile.builder import Builder, ManagerLike
from kreconcile.cache import Cache
from kreconcile.client import Client
from kreconcile.controller import Controller
from kreconcile.errors import AlreadyExists, NotFound, ignore_not_found
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import (
    POD,
    STATEFULSET,
    Expectations,
    is_deleting,
    is_ready,
    is_terminal,
    name_of,
    owned_pods,
    phase,
    pod_from_template,
    safe_hash,
    status_patch,
    with_kind,
)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    """The ordinal of ``<set_name>-<i>``, or None when ``pod_name`` is not of that form."""
    prefix, _, suffix = pod_name.rpartition("-")
    return int(suffix) if prefix == set_name and suffix.isdigit() else None


class StatefulSetReconciler:
    """Creates, deletes and replaces the set's pods in ordinal order, then writes the status."""

    def __init__(self, client: Client, cache: Cache) -> None:
        self.client = client
        self.cache = cache
        self.expectations = Expectations()

    async def reconcile(self, request: Request) -> Result:
        try:
            sts = with_kind(await self.cache.get(STATEFULSET, request.name, request.namespace), STATEFULSET)
        except NotFound:
            self.expectations.forget(str(request))
            return Result()
        if is_deleting(sts):
            return Result()
        key = str(request)
        name = name_of(sts)
        pods = owned_pods(await self.cache.list(POD, request.namespace), sts)
        if not self.expectations.satisfied(key, pods):
            return Result(requeue_after=0.2)
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{safe_hash(spec.get('template') or {})}"
        parallel = spec.get("podManagementPolicy") == "Parallel"
        by_ordinal: dict[int, dict[str, Any]] = {}
        for pod in pods:
            ordinal = ordinal_of(name, name_of(pod))
            if ordinal is not None:
                by_ordinal[ordinal] = pod
        await self._step(key, sts, by_ordinal, replicas, revision, parallel)
        await self._write_status(sts, pods, revision)
        return Result()

    async def _step(
        self, key: str, sts: dict[str, Any], by_ordinal: dict[int, dict[str, Any]], replicas: int, revision: str,
        parallel: bool,
    ) -> None:
        for i in range(replicas):
            pod = by_ordinal.get(i)
            if pod is None:
                await self._create(key, sts, i, revision)
                if not parallel:
                    return
                continue
            if is_deleting(pod):
                if not parallel:
                    return
                continue
            if is_terminal(pod):
                await self._delete(key, pod)
                if not parallel:
                    return
                continue
            if not parallel and not (phase(pod) == "Running" and is_ready(pod)):
                return
        excess = sorted((i for i in by_ordinal if i >= replicas), reverse=True)
        for i in excess:
            if not is_deleting(by_ordinal[i]):
                await self._delete(key, by_ordinal[i])
            if not parallel:
                return
        strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
        if strategy != "RollingUpdate":
            return
        current = [by_ordinal[i] for i in range(replicas) if i in by_ordinal]
        if len(current) < replicas or not all(is_ready(p) and not is_deleting(p) for p in current):
            return
        for pod in reversed(current):
            if (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision:
                await self._delete(key, pod)
                return

    async def _create(self, key: str, sts: dict[str, Any], ordinal: int, revision: str) -> None:
        spec = sts.get("spec") or {}
        set_name = name_of(sts)
        pod_name = f"{set_name}-{ordinal}"
        pod = pod_from_template(
            spec.get("template") or {}, sts, name=pod_name,
            labels={POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision},
        )
        pod["spec"]["hostname"] = pod_name
        if spec.get("serviceName"):
            pod["spec"]["subdomain"] = spec["serviceName"]
        volumes = pod["spec"].setdefault("volumes", [])
        for template in spec.get("volumeClaimTemplates") or []:
            claim_name = f"{name_of(template)}-{pod_name}"
            await self._ensure_claim(sts, template, claim_name)
            volumes[:] = [v for v in volumes if v.get("name") != name_of(template)]
            volumes.append({"name": name_of(template), "persistentVolumeClaim": {"claimName": claim_name}})
        if not volumes:
            del pod["spec"]["volumes"]
        self.expectations.created(key, pod_name)
        try:
            await self.client.create(pod)
        except AlreadyExists:
            pass

    async def _ensure_claim(self, sts: dict[str, Any], template: dict[str, Any], claim_name: str) -> None:
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim_name,
                "namespace": sts["metadata"]["namespace"],
                "labels": dict((sts.get("spec") or {}).get("selector", {}).get("matchLabels") or {}),
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        try:
            await self.client.create(claim)
        except AlreadyExists:
            pass

    async def _delete(self, key: str, pod: dict[str, Any]) -> None:
        self.expectations.deleted(key, name_of(pod))
        await ignore_not_found(self.client.delete(with_kind(pod, POD)))

    async def _write_status(self, sts: dict[str, Any], pods: list[dict[str, Any]], revision: str) -> None:
        name = name_of(sts)
        members = [p for p in pods if ordinal_of(name, name_of(p)) is not None and not is_terminal(p)]
        updated = [p for p in members if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision]
        ready = sum(1 for p in members if is_ready(p))
        old_status = sts.get("status") or {}
        current_revision = revision if len(updated) == len(members) else old_status.get("currentRevision", revision)
        current = [p for p in members
                   if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == current_revision]
        status: dict[str, Any] = {
            "observedGeneration": (sts.get("metadata") or {}).get("generation", 1),
            "replicas": len(members),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": len(current),
            "updatedReplicas": len(updated),
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        for field in ("readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"):
            if status[field] == 0:
                del status[field]
        if status != old_status:
            await ignore_not_found(self.client.status().patch(sts, status_patch(old_status, status)))


def setup_statefulset_controller(manager: ManagerLike, client: Client, cache: Cache) -> Controller:
    """Register the StatefulSet controller (``for_`` StatefulSet, ``owns`` Pod) with ``manager``."""
    return (
        Builder(manager)
        .named("localcluster-statefulset")
        .for_(STATEFULSET)
        .owns(POD)
        .with_options(needs_leader_election=False, skip_name_validation=True)
        .complete(StatefulSetReconciler(client, cache))
    )
