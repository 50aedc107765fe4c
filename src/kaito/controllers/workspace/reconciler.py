"""The workspace controller's reconcile: a Workspace becomes nodes, Services and a serving StatefulSet.

Flow (upstream Kaito's, see ``shared/reference/kaito-inventory.md``): get → deleting? delete the NodeClaims, then
drop the finalizer → add the finalizer and the revision annotations (+ a ControllerRevision, 10 kept) → plan
(:func:`kaito.workloads.plan_workspace`: preset, SKU, node count) → NodeClaims (deterministic names, so a
restart with a stale cache never provisions twice) or bring-your-own nodes → once the nodes are ready, the
inference objects (Services, ConfigMap, StatefulSet; each updated only when its desired content changed) → probe
the Service → status from :func:`~kaito.controllers.workspace.status.compute_status`, written only when changed.

Tuning workspaces get their nodes here too; the tuning controller owns their Job.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pydantic
import structlog

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace, parse_workspace
from kaito.controllers.machine.reconciler import REASON_MACHINE_NOT_FOUND
from kaito.controllers.workspace.metrics import WorkspaceTally
from kaito.controllers.workspace.status import Observed, compute_status
from kaito.presets.catalog import Catalog, load_catalog
from kaito.workloads import plan_workspace, spec_hash, workspace_labels
from kaito.workloads.plan import PlanError, WorkloadPlan
from kreconcile.clock import Clock, RealClock
from kreconcile.conditions import get_condition, is_true
from kreconcile.errors import AlreadyExists, NotFound
from kreconcile.finalizers import add_finalizer, remove_finalizer
from kreconcile.gvk import GVK
from kreconcile.labels import selector_from_dict
from kreconcile.reconcile import Request, Result

log = structlog.get_logger("kaito.controllers.workspace")

WORKSPACE = GVK(c.GROUP, c.STORAGE_VERSION, c.WORKSPACE_KIND)
NODECLAIM = GVK(c.KARPENTER_GROUP, c.NODECLAIM_VERSION, c.NODECLAIM_KIND)
NODE = GVK("", "v1", "Node")
POD = GVK("", "v1", "Pod")
STATEFULSET = GVK("apps", "v1", "StatefulSet")
CONTROLLER_REVISION = GVK("apps", "v1", "ControllerRevision")

ANNOTATION_OBJECT_HASH = "kaito.sh/object-hash"
"""On objects the controller writes: SHA-256 of the desired object, so it updates only when its intent changed
(the server's defaulted fields never cause a write)."""
REVISION_HISTORY = 10
"""ControllerRevisions kept per workspace (upstream)."""
WAIT_NODES_S = 2.0
"""Seconds between looks while nodes are provisioning (upstream requeues after 2 s)."""
WAIT_ENDPOINT_S = 5.0
"""Seconds between Service probes while the workload is ready but the endpoint does not answer yet."""
RECHECK_READY_S = 60.0
"""Seconds between Service probes of a ready workspace (an endpoint that stops answering flips the status)."""

EndpointProber = Callable[[str, str], Awaitable[tuple[bool, str]]]
"""(namespace, service) → (answered, message)."""


def object_hash(obj: Mapping[str, Any]) -> str:
    """SHA-256 hex of an object's canonical JSON without its hash annotation."""
    clean = copy.deepcopy(dict(obj))
    (clean.get("metadata") or {}).get("annotations", {}).pop(ANNOTATION_OBJECT_HASH, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class WorkspaceReconciler:
    """Reconciles one Workspace (see the module docstring).

    Args:
        client: the manager's client (reads from the cache, writes to the API server).
        api: a live client (ControllerRevision pruning lists it without caching that kind).
        auto_provisioning: True when a node provisioner (the machine controller) serves NodeClaims; False means
            bring-your-own nodes only.
        prober: checks the inference Service; None leaves ``WorkspaceSucceeded`` at "not probed".
        catalog: presets and SKUs (default: packaged).
        recorder: event recorder (``event(obj, type, reason, note, action)``) or None.
        version: kaito-py version for its own images (default: installed).
        clock: condition timestamps.
    """

    def __init__(
        self,
        client: Any,
        api: Any = None,
        *,
        auto_provisioning: bool = True,
        prober: EndpointProber | None = None,
        catalog: Catalog | None = None,
        recorder: Any = None,
        version: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.api = api or client
        self.auto_provisioning = auto_provisioning
        self.prober = prober
        self.catalog = catalog or load_catalog()
        self.recorder = recorder
        self.version = version
        self.clock = clock or RealClock()
        self.tally = WorkspaceTally()

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, request: Request) -> Result:
        """Drive workspace ``request`` toward Ready (see the module docstring)."""
        key = (request.namespace or "", request.name)
        try:
            obj = await self.client.get(WORKSPACE, request.name, request.namespace)
        except NotFound:
            self.tally.forget(key)
            return Result()
        if obj["metadata"].get("deletionTimestamp"):
            self.tally.observe(key, "Deleting", _preset_name(obj))
            return await self._delete(obj)
        try:
            ws = parse_workspace(obj)
        except (pydantic.ValidationError, ValueError) as exc:
            await self._write_status(obj, _invalid_observed(obj, str(exc)))
            return Result()
        obj = await self._ensure_metadata(obj, ws)
        ws = parse_workspace(obj)
        is_inference = ws.inference is not None
        nodes_for_plan = await self._byo_nodes(ws) if self._byo(ws) else []
        try:
            plan = plan_workspace(
                ws, self.catalog, auto_provisioning=self.auto_provisioning, nodes=nodes_for_plan, version=self.version
            )
        except PlanError as exc:
            observed = _invalid_observed(obj, str(exc))
            await self._write_status(obj, observed)
            self.tally.observe(key, "Failed", _preset_name(obj))
            return Result()
        observed = Observed(
            generation=obj["metadata"].get("generation"),
            inference=is_inference,
            target_node_count=plan.node_count,
            auto_provisioning=plan.provisioning == "auto",
            gpu_required=bool(plan.preset is not None and plan.preset.requires_gpu),
        )
        if plan.provisioning == "auto":
            observed.nodeclaims = await self._ensure_nodeclaims(obj, plan)
            names = {(nc.get("status") or {}).get("nodeName") for nc in observed.nodeclaims} - {None}
            observed.nodes = [n for n in await self._list(NODE) if n["metadata"]["name"] in names]
        else:
            observed.nodes = nodes_for_plan
        status = compute_status(obj.get("status") or {}, observed, self.clock.wall())
        resource_ready = is_true(status["conditions"], c.COND_RESOURCE_READY)
        requeue: float | None = None if resource_ready else WAIT_NODES_S
        if resource_ready and is_inference:
            await self._ensure_objects(obj, plan)
            observed.workload = await self._get(STATEFULSET, ws.name, ws.namespace)
            observed.pods = await self._list(POD, ws.namespace, {c.LABEL_WORKSPACE_NAME: ws.name})
            await self._replace_stale_pods(obj, observed.workload, observed.pods)
            status = compute_status(obj.get("status") or {}, observed, self.clock.wall())
            if is_true(status["conditions"], c.COND_INFERENCE_READY) and self.prober is not None:
                observed.endpoint = await self.prober(ws.namespace, ws.name)
                status = compute_status(obj.get("status") or {}, observed, self.clock.wall())
                requeue = RECHECK_READY_S if observed.endpoint[0] else WAIT_ENDPOINT_S
        await self._write_status(obj, observed, status)
        self.tally.observe(key, status.get("state") or c.STATE_PENDING, _preset_name(obj))
        return Result(requeue_after=requeue)

    # ------------------------------------------------------------------ metadata and revisions

    async def _ensure_metadata(self, obj: dict[str, Any], ws: AnyWorkspace) -> dict[str, Any]:
        """Add the finalizer and the revision annotations; record a ControllerRevision when the spec changed."""
        changed = add_finalizer(obj, c.FINALIZER)
        annotations = obj["metadata"].setdefault("annotations", {})
        digest = spec_hash(ws)
        new_revision: int | None = None
        if annotations.get(c.ANNOTATION_HASH) != digest:
            new_revision = int(annotations.get(c.ANNOTATION_REVISION, "0") or 0) + 1
            annotations[c.ANNOTATION_HASH] = digest
            annotations[c.ANNOTATION_REVISION] = str(new_revision)
            changed = True
        if changed:
            obj = await self.client.update(obj)
        if new_revision is not None:
            await self._record_revision(obj, ws, digest, new_revision)
        return obj

    async def _record_revision(self, obj: dict[str, Any], ws: AnyWorkspace, digest: str, revision: int) -> None:
        wire = ws.to_wire()
        data = {k: wire[k] for k in ("resource", "inference", "tuning") if wire.get(k) is not None}
        cr: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": f"{ws.name[:52]}-{digest[:10]}",
                "namespace": ws.namespace,
                "labels": workspace_labels(ws),
                "annotations": {c.ANNOTATION_HASH: digest},
                "ownerReferences": [_owner_ref(obj)],
            },
            "data": data,
            "revision": revision,
        }
        try:
            await self.api.create(cr)
        except AlreadyExists:
            existing = await self.api.get(CONTROLLER_REVISION, cr["metadata"]["name"], ws.namespace)
            existing["revision"] = revision
            await self.api.update(existing)
        history = await self.api.list(CONTROLLER_REVISION, ws.namespace, label_selector={
            c.LABEL_WORKSPACE_NAME: ws.name, c.LABEL_WORKSPACE_NAMESPACE: ws.namespace})
        items = sorted(history["items"], key=lambda r: int(r.get("revision", 0)))
        for old in items[:-REVISION_HISTORY]:
            try:
                await self.api.delete(old)
            except NotFound:
                pass

    # ------------------------------------------------------------------ nodes

    def _byo(self, ws: AnyWorkspace) -> bool:
        return bool(ws.resource.preferred_nodes) or not self.auto_provisioning

    async def _byo_nodes(self, ws: AnyWorkspace) -> list[dict[str, Any]]:
        """Nodes matching ``resource.labelSelector`` (and ``preferredNodes`` when given)."""
        selector = selector_from_dict(ws.resource.label_selector.to_wire())
        preferred = set(ws.resource.preferred_nodes or [])
        nodes = [n for n in await self._list(NODE) if selector.matches(n["metadata"].get("labels") or {})]
        if preferred:
            nodes = [n for n in nodes if n["metadata"]["name"] in preferred]
        return sorted(nodes, key=lambda n: n["metadata"]["name"])

    async def _ensure_nodeclaims(self, obj: dict[str, Any], plan: WorkloadPlan) -> list[dict[str, Any]]:
        """Create the plan's missing NodeClaims; delete this workspace's NodeClaims beyond the plan."""
        meta = obj["metadata"]
        existing = {
            nc["metadata"]["name"]: nc
            for nc in await self._list(NODECLAIM, None, {c.LABEL_WORKSPACE_NAME: meta["name"],
                                                         c.LABEL_WORKSPACE_NAMESPACE: meta["namespace"]})
        }
        wanted = {nc["metadata"]["name"] for nc in plan.nodeclaims}
        result: list[dict[str, Any]] = []
        for desired in plan.nodeclaims:
            name = desired["metadata"]["name"]
            if name in existing:
                current = existing[name]
                ready = get_condition((current.get("status") or {}).get("conditions") or [], c.NODECLAIM_READY)
                if ready is not None and ready.get("reason") == REASON_MACHINE_NOT_FOUND and not current[
                        "metadata"].get("deletionTimestamp"):
                    # the machine vanished behind a launched NodeClaim (Karpenter's liveness): replace it
                    await self._delete_quietly(current)
                    self._event(obj, "Warning", REASON_MACHINE_NOT_FOUND,
                                f"NodeClaim {name} lost its machine; replacing it", "Provision")
                result.append(current)
                continue
            try:
                created = await self.client.create(desired)
                self._event(obj, "Normal", "NodeClaimCreated", f"created NodeClaim {name}", "Provision")
            except AlreadyExists:  # created by an earlier pass whose event the cache has not delivered yet
                created = await self.api.get(NODECLAIM, name)
            result.append(created)
        for name, nc in existing.items():
            if name not in wanted and not nc["metadata"].get("deletionTimestamp"):
                await self._delete_quietly(nc)
                self._event(obj, "Normal", "NodeClaimDeleted", f"deleted surplus NodeClaim {name}", "Deprovision")
        return result

    # ------------------------------------------------------------------ inference objects

    async def _ensure_objects(self, obj: dict[str, Any], plan: WorkloadPlan) -> None:
        """Create or update every planned object, writing only when its desired content changed."""
        owner = _owner_ref(obj)
        for desired in plan.objects:
            desired = copy.deepcopy(desired)
            desired["metadata"]["ownerReferences"] = [owner]
            desired["metadata"].setdefault("annotations", {})[ANNOTATION_OBJECT_HASH] = object_hash(desired)
            outcome = await self._apply(desired)
            if outcome != "unchanged":
                kind, name = desired["kind"], desired["metadata"]["name"]
                self._event(obj, "Normal", f"{kind}{outcome.capitalize()}", f"{outcome} {kind} {name}", "Deploy")

    async def _apply(self, desired: dict[str, Any]) -> str:
        gvk = GVK.of(desired)
        meta = desired["metadata"]
        try:
            existing = await self.client.get(gvk, meta["name"], meta.get("namespace"))
        except NotFound:
            try:
                await self.client.create(desired)
                return "created"
            except AlreadyExists:
                existing = await self.api.get(gvk, meta["name"], meta.get("namespace"))
        current = (existing["metadata"].get("annotations") or {}).get(ANNOTATION_OBJECT_HASH)
        if current == meta["annotations"][ANNOTATION_OBJECT_HASH]:
            return "unchanged"
        updated = copy.deepcopy(existing)
        umeta = updated["metadata"]
        umeta["labels"] = {**(umeta.get("labels") or {}), **(meta.get("labels") or {})}
        umeta["annotations"] = {**(umeta.get("annotations") or {}), **meta["annotations"]}
        umeta["ownerReferences"] = meta["ownerReferences"]
        for key, value in desired.items():
            if key not in ("apiVersion", "kind", "metadata", "status"):
                updated[key] = copy.deepcopy(value)
        if gvk.kind == "Service":  # clusterIP is immutable and server-assigned
            for field in ("clusterIP", "clusterIPs"):
                if field in (existing.get("spec") or {}) and field not in (desired.get("spec") or {}):
                    updated["spec"][field] = existing["spec"][field]
        await self.client.update(updated)
        return "updated"

    async def _replace_stale_pods(self, obj: dict[str, Any], sts: Mapping[str, Any] | None,
                                  pods: list[dict[str, Any]]) -> None:
        """Delete pods left on an old StatefulSet revision that are not Ready.

        A StatefulSet rolls pods one at a time and waits for each to be Running and Ready, so a pod that broke under
        a bad edit (a missing ConfigMap, an unpullable image) keeps the fixed spec from ever rolling out: Kubernetes
        documents this as needing a manual ``kubectl delete pod`` ("forced rollback", StatefulSet docs). Such a pod
        serves nothing, so the operator deletes it and the StatefulSet recreates it at ``status.updateRevision``.
        Ready pods are never touched.
        """
        update = ((sts or {}).get("status") or {}).get("updateRevision")
        if not update:
            return
        for pod in pods:
            meta = pod["metadata"]
            revision = (meta.get("labels") or {}).get(REVISION_LABEL)
            if meta.get("deletionTimestamp") or revision in (None, update) or _pod_ready(pod):
                continue
            await self._delete_quietly(pod)
            self._event(obj, "Warning", "StalePodReplaced",
                        f"pod {meta['name']} is not ready on the old revision {revision}; deleted so that the "
                        f"StatefulSet recreates it at revision {update}", "Rollout")

    # ------------------------------------------------------------------ deletion

    async def _delete(self, obj: dict[str, Any]) -> Result:
        meta = obj["metadata"]
        if c.FINALIZER not in (meta.get("finalizers") or []):
            return Result()
        deleting = compute_status(obj.get("status") or {}, Observed(
            generation=meta.get("generation"), inference=obj.get("inference") is not None, target_node_count=0,
            auto_provisioning=True, gpu_required=False, deleting=True), self.clock.wall())
        if deleting != (obj.get("status") or {}):
            obj = await self._status_update(obj, deleting)
        claims = await self._list(NODECLAIM, None, {c.LABEL_WORKSPACE_NAME: meta["name"],
                                                    c.LABEL_WORKSPACE_NAMESPACE: meta["namespace"]})
        live = await self.api.list(NODECLAIM, label_selector={c.LABEL_WORKSPACE_NAME: meta["name"],
                                                              c.LABEL_WORKSPACE_NAMESPACE: meta["namespace"]})
        claims = live["items"] or claims
        if claims:
            for nc in claims:
                if not nc["metadata"].get("deletionTimestamp"):
                    await self._delete_quietly(nc)
                    self._event(obj, "Normal", "NodeClaimDeleted", f"deleting NodeClaim {nc['metadata']['name']}",
                                "Deprovision")
            return Result(requeue_after=WAIT_NODES_S)
        remove_finalizer(obj, c.FINALIZER)
        try:
            await self.client.update(obj)
        except NotFound:
            pass
        log.info("workspace_finalized", namespace=meta["namespace"], name=meta["name"])
        return Result()

    # ------------------------------------------------------------------ I/O helpers

    async def _write_status(self, obj: dict[str, Any], observed: Observed, status: dict[str, Any] | None = None
                            ) -> None:
        new = status if status is not None else compute_status(obj.get("status") or {}, observed, self.clock.wall())
        old = obj.get("status") or {}
        if new == old:
            return
        self._transition_events(obj, old, new)
        await self._status_update(obj, new)

    async def _status_update(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self.client.status().update({**obj, "status": status})
            return result
        except NotFound:
            return obj

    def _transition_events(self, obj: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        before = {x["type"]: x for x in old.get("conditions") or []}
        for cond in new.get("conditions") or []:
            prev = before.get(cond["type"])
            if prev is not None and prev.get("status") == cond["status"] and prev.get("reason") == cond["reason"]:
                continue
            if cond["status"] == "True":
                self._event(obj, "Normal", cond["reason"], f"{cond['type']}: {cond['message']}", "Reconcile")
            elif cond["reason"] not in ("ResourceNotReady", "InferenceNotReady", "WorkloadNotReady"):
                self._event(obj, "Warning", cond["reason"], f"{cond['type']}: {cond['message']}", "Reconcile")

    async def _list(self, gvk: GVK, namespace: str | None = None, labels: Mapping[str, str] | None = None
                    ) -> list[dict[str, Any]]:
        result = await self.client.list(gvk, namespace, label_selector=dict(labels) if labels else None)
        items: list[dict[str, Any]] = result["items"]
        return items

    async def _get(self, gvk: GVK, name: str, namespace: str | None) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.client.get(gvk, name, namespace)
            return found
        except NotFound:
            return None

    async def _delete_quietly(self, obj: Mapping[str, Any]) -> None:
        try:
            await self.client.delete(obj)
        except NotFound:
            pass

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, note: str, action: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, note, action)


REVISION_LABEL = "controller-revision-hash"
"""The StatefulSet controller's label with each pod's revision (apps/v1 StatefulSet)."""


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in (pod.get("status") or {}).get("conditions") or [])


def _owner_ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion", WORKSPACE.api_version),
        "kind": c.WORKSPACE_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _preset_name(obj: Mapping[str, Any]) -> str:
    section = obj.get("inference") or obj.get("tuning") or {}
    return str((section.get("preset") or {}).get("name") or "")


def _invalid_observed(obj: Mapping[str, Any], message: str) -> Observed:
    return Observed(
        generation=obj["metadata"].get("generation"),
        inference=obj.get("inference") is not None,
        target_node_count=int((obj.get("resource") or {}).get("count") or 1),
        auto_provisioning=False,
        gpu_required=False,
        plan_error=message,
    )
