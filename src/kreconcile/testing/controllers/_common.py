"""Shared pieces of the workload controllers: kinds, pod helpers, template hashes, expectations, conditions."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kreconcile.gvk import GVK
from kreconcile.ownerrefs import is_controlled_by, set_controller_reference

POD = GVK("", "v1", "Pod")
NODE = GVK("", "v1", "Node")
SERVICE = GVK("", "v1", "Service")
ENDPOINTS = GVK("", "v1", "Endpoints")
SECRET = GVK("", "v1", "Secret")
CONFIG_MAP = GVK("", "v1", "ConfigMap")
PVC = GVK("", "v1", "PersistentVolumeClaim")
NAMESPACE = GVK("", "v1", "Namespace")
LEASE = GVK("coordination.k8s.io", "v1", "Lease")
DEPLOYMENT = GVK("apps", "v1", "Deployment")
STATEFULSET = GVK("apps", "v1", "StatefulSet")
JOB = GVK("batch", "v1", "Job")
ENDPOINT_SLICE = GVK("discovery.k8s.io", "v1", "EndpointSlice")

_SAFE = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet of Kubernetes' ``rand.SafeEncodeString`` (no vowels, no confusable digits)."""


def safe_hash(data: object, length: int = 10) -> str:
    """A stable short hash of ``data`` (JSON with sorted keys) in Kubernetes' safe alphabet."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:length])


def with_kind(obj: dict[str, Any], gvk: GVK) -> dict[str, Any]:
    """``obj`` with ``apiVersion``/``kind`` filled in (cache and list items may lack them)."""
    obj.setdefault("apiVersion", gvk.api_version)
    obj.setdefault("kind", gvk.kind)
    return obj


def pod_from_template(
    template: Mapping[str, Any],
    owner: dict[str, Any],
    *,
    name: str | None = None,
    generate_name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod from a ``PodTemplateSpec``, controlled by ``owner`` (in the owner's namespace)."""
    meta_t = copy.deepcopy(dict(template.get("metadata") or {}))
    pod_labels = {**(meta_t.get("labels") or {}), **(labels or {})}
    meta: dict[str, Any] = {"namespace": owner["metadata"]["namespace"], "labels": pod_labels}
    if meta_t.get("annotations"):
        meta["annotations"] = meta_t["annotations"]
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(dict(template.get("spec") or {})),
    }
    set_controller_reference(owner, pod)
    return pod


def owned_pods(pods: Iterable[dict[str, Any]], owner: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods whose controller reference is ``owner`` (same kind, name and uid)."""
    return [p for p in pods if is_controlled_by(p, owner)]


def phase(pod: Mapping[str, Any]) -> str:
    """``status.phase`` (``Pending`` when unset)."""
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_terminal(pod: Mapping[str, Any]) -> bool:
    """Phase ``Succeeded`` or ``Failed``."""
    return phase(pod) in ("Succeeded", "Failed")


def is_deleting(obj: Mapping[str, Any]) -> bool:
    """``metadata.deletionTimestamp`` is set."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: Mapping[str, Any]) -> bool:
    """Neither terminal nor being deleted (what controllers count as a live replica)."""
    return not is_terminal(pod) and not is_deleting(pod)


def is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's ``Ready`` condition is ``True``."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def set_workload_condition(
    conditions: list[dict[str, Any]], ctype: str, status: str, reason: str, message: str, now: str
) -> None:
    """Set an apps/batch-style condition (``lastUpdateTime`` on any change, ``lastTransitionTime`` on flips)."""
    for cond in conditions:
        if cond.get("type") == ctype:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = now
                cond["lastUpdateTime"] = now
            elif cond.get("reason") != reason or cond.get("message") != message:
                cond["lastUpdateTime"] = now
            cond.update(status=status, reason=reason, message=message)
            return
    conditions.append(
        {"type": ctype, "status": status, "reason": reason, "message": message,
         "lastUpdateTime": now, "lastTransitionTime": now}
    )


class Expectations:
    """Creations and deletions a controller made that its cache has not shown yet (client-go's
    ``ControllerExpectations``), so a reconcile on a stale cache does not create or delete twice.

    Entries expire after ``ttl`` seconds (monotonic) in case the watch event never comes (upstream: 5 minutes).
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._adds: dict[str, dict[str, float]] = {}
        self._dels: dict[str, dict[str, float]] = {}

    def created(self, key: str, name: str) -> None:
        """Record that ``name`` was created for ``key``."""
        self._adds.setdefault(key, {})[name] = time.monotonic()

    def deleted(self, key: str, name: str) -> None:
        """Record that ``name`` was deleted for ``key``."""
        self._dels.setdefault(key, {})[name] = time.monotonic()

    def satisfied(self, key: str, present: Iterable[Mapping[str, Any]]) -> bool:
        """True when every recorded creation is visible and every recorded deletion is gone (or deleting)."""
        now = time.monotonic()
        by_name = {name_of(p): p for p in present}
        adds = {n: t for n, t in self._adds.get(key, {}).items() if n not in by_name and now - t < self.ttl}
        dels = {
            n: t for n, t in self._dels.get(key, {}).items()
            if n in by_name and not is_deleting(by_name[n]) and now - t < self.ttl
        }
        self._adds[key], self._dels[key] = adds, dels
        return not adds and not dels

    def forget(self, key: str) -> None:
        """Drop everything recorded for ``key`` (its owner is gone)."""
        self._adds.pop(key, None)
        self._dels.pop(key, None)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning status ``old`` into ``new`` (fields that disappeared are set to null)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    patch.update(new)
    return {"status": patch}
