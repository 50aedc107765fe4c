"""The tuning controller's reconcile: a tuning Workspace whose nodes are ready becomes a tuning Job.

Flow (upstream Kaito's tuning path): get the Workspace → skip unless it has ``tuning``, is not being deleted and
its ``ResourceReady`` is True (the workspace controller provisions the node) → the training config: the user's
ConfigMap ``tuning.config`` (same namespace) or the method's default template (ConfigMap
``<method>-params-template`` in the operator's namespace, else the copy packaged with kaito-py), validated by
the webhook's rule 7 (:func:`kaito.webhook.training_config.validate_training_config`) and copied into
``<ws>-tuning-config`` → the Job ``<ws>``; both built by :mod:`kaito.workloads.tuning`, the builders ``kaito plan``
prints with (:func:`~kaito.workloads.tuning.tuning_configmap`, :func:`~kaito.workloads.tuning.tuning_job`); an
existing Job of
another spec or config is deleted first (a changed spec re-runs the tuning) → status from
:func:`~kaito.controllers.tuning.status.compute_tuning_status`, written only when it changed, with Events on
transitions.

No retry storm: the Job has ``backoffLimit: 0`` and the controller never re-creates a failed Job of the same
spec and config; a failure is reported once (the failing container's log tail is read once per failed Job) and
the next run starts only when the user changes the Workspace or its ConfigMap.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pydantic
import structlog
import yaml

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace, parse_workspace
from kaito.controllers.tuning.status import (
    FAILURE_REASONS,
    REASON_CONFIG_NOT_FOUND,
    REASON_INVALID_CONFIG,
    REASON_INVALID_WORKSPACE,
    Failure,
    TuningObserved,
    compute_tuning_status,
    failed_container,
    job_condition,
    summarize_log,
)
from kaito.presets.catalog import Catalog, kaito_version, load_catalog
from kaito.webhook.training_config import validate_training_config
from kaito.workloads import plan_workspace
from kaito.workloads.plan import PlanError
from kaito.workloads.tuning import (
    ANNOTATION_CONFIG_SOURCE,
    ANNOTATION_JOB_HASH,
    default_config_source,
    default_config_text,
    output_description,
    tuning_config_name,
    tuning_configmap,
    tuning_job,
)
from kreconcile.clock import Clock, RealClock
from kreconcile.conditions import get_condition, is_true
from kreconcile.errors import AlreadyExists, Conflict, NotFound
from kreconcile.gvk import GVK
from kreconcile.reconcile import Request, Result

log = structlog.get_logger("kaito.controllers.tuning")

WORKSPACE = GVK(c.GROUP, c.STORAGE_VERSION, c.WORKSPACE_KIND)
JOB = GVK("batch", "v1", "Job")
CONFIGMAP = GVK("", "v1", "ConfigMap")
POD = GVK("", "v1", "Pod")
NODE = GVK("", "v1", "Node")

DEFAULT_TEMPLATE_NAMESPACE = "kaito-workspace"
"""Namespace holding the default config templates: the operator's (``kaito-operator --namespace`` default,
upstream's Helm release namespace)."""
TEMPLATE_NAME = "{method}-params-template"
"""Name of the default config ConfigMap per method (upstream: ``lora-params-template``, ``qlora-params-template``)."""
LOG_TAIL_LINES = 20
"""Lines of the failed container's log read for the condition message (reduced to its last 5 non-empty)."""
TAIL_MEMO_SIZE = 256
"""Failed Jobs whose log tail is remembered in memory (so a stale cache never causes a second log read)."""
WAIT_DELETION_S = 1.0
"""Seconds between looks while a replaced Job is still being deleted."""


class TuningReconciler:
    """Reconciles the tuning side of one Workspace (see the module docstring).

    Args:
        client: the manager's client (cached reads of Workspaces, Jobs, ConfigMaps, Pods; writes to the server).
        api: a live client (pod logs, the template ConfigMap in the operator's namespace); default ``client``.
        catalog: presets (default: packaged).
        recorder: event recorder (``event(obj, type, reason, note, action)``) or None.
        version: kaito-py version for its own images (default: installed).
        template_namespace: where the ``<method>-params-template`` ConfigMaps are looked up.
        clock: condition timestamps.
    """

    def __init__(
        self,
        client: Any,
        api: Any = None,
        *,
        catalog: Catalog | None = None,
        recorder: Any = None,
        version: str | None = None,
        template_namespace: str = DEFAULT_TEMPLATE_NAMESPACE,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.api = api or client
        self.catalog = catalog or load_catalog()
        self.recorder = recorder
        self.version = version
        self.template_namespace = template_namespace
        self.clock = clock or RealClock()
        self._tails: dict[tuple[str, str], str] = {}

    async def reconcile(self, request: Request) -> Result:
        """Drive tuning workspace ``request``'s Job and status (see the module docstring)."""
        try:
            obj = await self.client.get(WORKSPACE, request.name, request.namespace)
        except NotFound:
            return Result()
        if obj.get("tuning") is None or obj["metadata"].get("deletionTimestamp"):
            return Result()
        if not is_true((obj.get("status") or {}).get("conditions") or [], c.COND_RESOURCE_READY):
            return Result()  # the workspace controller's status write (ResourceReady) brings us back
        try:
            ws = parse_workspace(obj)
        except (pydantic.ValidationError, ValueError):
            return Result()  # the workspace controller reports InvalidWorkspace
        observed = TuningObserved(generation=obj["metadata"].get("generation"), output=output_description(ws))
        try:
            plan = plan_workspace(ws, self.catalog, nodes=await self._worker_nodes(obj), version=self.version)
        except PlanError as exc:
            observed.blocked = (REASON_INVALID_WORKSPACE, str(exc))
            await self._write_status(obj, observed)
            return Result()
        if plan.preset is None:
            observed.blocked = (REASON_INVALID_WORKSPACE, "tuning.preset: is required; set the base model")
            await self._write_status(obj, observed)
            return Result()
        try:
            text, source = await self._config(ws)
        except _Blocked as exc:
            observed.blocked = (exc.reason, exc.message)
            await self._write_status(obj, observed)
            return Result()
        try:
            job = tuning_job(ws, plan.preset, gpus_per_node=plan.gpus_per_node,
                             version=self.version or kaito_version(), config_text=text)
        except ValueError as exc:
            observed.blocked = (REASON_INVALID_WORKSPACE, str(exc))
            await self._write_status(obj, observed)
            return Result()
        owner = _owner_ref(obj)
        if source != f"configmap/{ws.namespace}/{tuning_config_name(ws)}":
            cm = tuning_configmap(ws, text, source)
            cm["metadata"]["ownerReferences"] = [owner]
            await self._apply_configmap(obj, cm)
        job["metadata"]["ownerReferences"] = [owner]
        current = await self._get(JOB, ws.name, ws.namespace)
        requeue: float | None = None
        if current is not None and _annotation(current, ANNOTATION_JOB_HASH) != _annotation(job, ANNOTATION_JOB_HASH):
            if not current["metadata"].get("deletionTimestamp"):
                await self._delete_quietly(current)
                self._event(obj, "Normal", "TuningJobReplaced",
                            f"the spec or training config changed; deleted tuning Job {ws.name} to run it again",
                            "Tune")
            observed.restarting = True
            requeue = WAIT_DELETION_S
        elif current is None:
            try:
                current = await self.client.create(job)
                self._event(obj, "Normal", "TuningJobCreated", f"created tuning Job {ws.name}", "Tune")
                log.info("tuning_job_created", namespace=ws.namespace, name=ws.name)
            except AlreadyExists:  # the old Job is still being deleted, or the cache is behind
                observed.restarting = True
                requeue = WAIT_DELETION_S
        if not observed.restarting and current is not None:
            observed.job = current
            observed.pods = await self._job_pods(current)
            if job_condition(current, "Failed"):
                observed.failure = await self._failure(obj, current, observed.pods)
        await self._write_status(obj, observed)
        return Result(requeue_after=requeue)

    # ------------------------------------------------------------------ config

    async def _config(self, ws: AnyWorkspace) -> tuple[str, str]:
        """(text, source) of the effective training config.

        Raises:
            _Blocked: the user's ConfigMap is missing, lacks the key, or fails rule 7.
        """
        assert ws.tuning is not None
        method = ws.tuning.method or "lora"
        if ws.tuning.config:
            cm = await self._get(CONFIGMAP, ws.tuning.config, ws.namespace)
            if cm is None:
                raise _Blocked(REASON_CONFIG_NOT_FOUND, (
                    f"tuning.config: ConfigMap {ws.namespace}/{ws.tuning.config} not found; create it with key "
                    f"{c.TUNING_CONFIG_KEY}, or remove tuning.config to use the {method} defaults"))
            text = (cm.get("data") or {}).get(c.TUNING_CONFIG_KEY)
            if not text:
                keys = ", ".join(sorted(cm.get("data") or {})) or "none"
                raise _Blocked(REASON_INVALID_CONFIG, (
                    f"tuning.config: ConfigMap {ws.namespace}/{ws.tuning.config} has no key "
                    f"{c.TUNING_CONFIG_KEY} (keys: {keys}); put the training config under {c.TUNING_CONFIG_KEY}"))
            source = f"configmap/{ws.namespace}/{ws.tuning.config}"
        else:
            text, source = await self._default_config(ws, method)
        try:
            doc = _parse_config_text(text)
        except ValueError as exc:
            raise _Blocked(REASON_INVALID_CONFIG, f"{source}: {exc}") from None
        errors = validate_training_config(doc, method)
        if errors:
            raise _Blocked(REASON_INVALID_CONFIG, f"{source}: " + "; ".join(str(e) for e in errors))
        return text, source

    async def _default_config(self, ws: AnyWorkspace, method: str) -> tuple[str, str]:
        """The method's default: the copy already made for ``ws`` (a later template edit must not re-run
        finished jobs), else the template ConfigMap, else kaito-py's packaged default."""
        name = TEMPLATE_NAME.format(method=method)
        sources = (f"configmap/{self.template_namespace}/{name}", default_config_source(method))
        mine = await self._get(CONFIGMAP, tuning_config_name(ws), ws.namespace)
        if mine is not None:
            source = _annotation(mine, ANNOTATION_CONFIG_SOURCE)
            text = (mine.get("data") or {}).get(c.TUNING_CONFIG_KEY)
            if source in sources and text:
                return str(text), str(source)
        try:
            cm = await self.api.get(CONFIGMAP, name, self.template_namespace)
        except NotFound:
            cm = None
        text = ((cm or {}).get("data") or {}).get(c.TUNING_CONFIG_KEY)
        if text:
            return text, sources[0]
        return default_config_text(method), sources[1]

    async def _apply_configmap(self, obj: Mapping[str, Any], desired: dict[str, Any]) -> None:
        meta = desired["metadata"]
        current = await self._get(CONFIGMAP, meta["name"], meta["namespace"])
        if current is None:
            try:
                await self.client.create(desired)
                source = meta["annotations"][ANNOTATION_CONFIG_SOURCE]
                self._event(obj, "Normal", "TuningConfigCreated", f"created ConfigMap {meta['name']} from {source}",
                            "Tune")
                return
            except AlreadyExists:
                current = await self.api.get(CONFIGMAP, meta["name"], meta["namespace"])
        if current.get("data") == desired["data"] and (current["metadata"].get("annotations") or {}) == meta[
                "annotations"]:
            return
        updated = copy.deepcopy(current)
        updated["data"] = desired["data"]
        updated["metadata"]["annotations"] = {**(current["metadata"].get("annotations") or {}), **meta["annotations"]}
        updated["metadata"]["ownerReferences"] = meta["ownerReferences"]
        await self.client.update(updated)

    # ------------------------------------------------------------------ job observation

    async def _job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        uid = job["metadata"].get("uid")
        result = await self.client.list(POD, job["metadata"]["namespace"],
                                        label_selector={c.LABEL_WORKSPACE_NAME: job["metadata"]["name"]})
        return [p for p in result["items"]
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]

    async def _failure(self, obj: Mapping[str, Any], job: Mapping[str, Any], pods: list[dict[str, Any]]
                       ) -> Failure | None:
        """The failing container with its log tail; the log is read only when the status does not already
        report this failure (one read per failed Job, not per reconcile)."""
        failure = failed_container(pods)
        if failure is None:
            return None
        cond = get_condition((obj.get("status") or {}).get("conditions") or [], c.COND_WORKSPACE_SUCCEEDED)
        if cond is not None and cond.get("reason") in FAILURE_REASONS and f"container {failure.container}" in str(
                cond.get("message")) and cond.get("observedGeneration") == obj["metadata"].get("generation"):
            message = str(cond.get("message"))
            tail = message.split("; log: ", 1)[1].rsplit("; see `kubectl logs", 1)[0] if "; log: " in message else ""
            return Failure(failure.container, failure.exit_code, failure.reason, tail)
        key = (str(job["metadata"].get("uid")), failure.container)
        if key in self._tails:
            return Failure(failure.container, failure.exit_code, failure.reason, self._tails[key])
        pod = next((p for p in pods if any(
            cs.get("name") == failure.container
            for cs in [*((p.get("status") or {}).get("initContainerStatuses") or []),
                       *((p.get("status") or {}).get("containerStatuses") or [])])), None)
        tail = ""
        if pod is not None:
            try:
                text = await self.api.get_log(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                              container=failure.container, tail_lines=LOG_TAIL_LINES)
                tail = summarize_log(text)
            except Exception as exc:  # logs are best effort: the kubelet may be gone with the node
                log.info("tuning_log_unavailable", namespace=pod["metadata"]["namespace"],
                         pod=pod["metadata"]["name"], error=str(exc))
        self._tails[key] = tail
        while len(self._tails) > TAIL_MEMO_SIZE:
            self._tails.pop(next(iter(self._tails)))
        return Failure(failure.container, failure.exit_code, failure.reason, tail)

    async def _worker_nodes(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Nodes in ``status.workerNodes`` (their GPU count sizes the trainer's GPU request)."""
        nodes = []
        for name in (obj.get("status") or {}).get("workerNodes") or []:
            node = await self._get(NODE, name, None)
            if node is not None:
                nodes.append(node)
        return nodes

    # ------------------------------------------------------------------ status and I/O

    async def _write_status(self, obj: dict[str, Any], observed: TuningObserved) -> None:
        old = obj.get("status") or {}
        new = compute_tuning_status(old, observed, self.clock.wall(), obj["metadata"]["name"])
        if new == old:
            return
        self._transition_events(obj, old, new)
        try:
            await self.client.status().update({**obj, "status": new})
        except NotFound:
            pass

    def _transition_events(self, obj: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        before = {x["type"]: x for x in old.get("conditions") or []}
        for cond in new.get("conditions") or []:
            if cond["type"] not in (c.COND_JOB_STARTED, c.COND_WORKSPACE_SUCCEEDED):
                continue
            prev = before.get(cond["type"])
            if prev is not None and prev.get("status") == cond["status"] and prev.get("reason") == cond["reason"]:
                continue
            if cond["status"] == "True":
                self._event(obj, "Normal", cond["reason"], f"{cond['type']}: {cond['message']}", "Tune")
            elif cond["reason"] in FAILURE_REASONS or cond["reason"] in (REASON_CONFIG_NOT_FOUND,
                                                                         REASON_INVALID_WORKSPACE):
                self._event(obj, "Warning", cond["reason"], f"{cond['type']}: {cond['message']}", "Tune")

    async def _get(self, gvk: GVK, name: str, namespace: str | None) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.client.get(gvk, name, namespace)
            return found
        except NotFound:
            return None

    async def _delete_quietly(self, obj: Mapping[str, Any]) -> None:
        """Delete ``obj`` (its pods in the background); the uid precondition keeps a stale cached copy from
        deleting a newer object of the same name."""
        try:
            await self.client.delete(obj, propagation_policy="Background",
                                     preconditions={"uid": obj["metadata"]["uid"]})
        except (NotFound, Conflict):
            pass

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, note: str, action: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, note, action)


class _Blocked(Exception):
    """The Job cannot be created: ``reason`` (condition reason) and ``message`` (what to fix)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _parse_config_text(text: str) -> Any:
    """The YAML document of a ``training_config.yaml``.

    Raises:
        ValueError: not valid YAML, with the parser's line and column.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"training_config.yaml is not valid YAML: {exc}") from None


def _annotation(obj: Mapping[str, Any], key: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


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
