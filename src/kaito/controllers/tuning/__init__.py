"""The tuning controller: :class:`TuningReconciler` and :func:`setup_with_manager`.

Tuning Workspaces get their node from the workspace controller (``ResourceReady``); this controller then owns the
tuning Job ``<ws>`` and the ConfigMap ``<ws>-tuning-config`` and writes ``JobStarted``, ``WorkspaceSucceeded`` and
the v1beta1 ``state`` (Running / Succeeded / Failed). See :mod:`kaito.controllers.tuning.reconciler` for the
flow, :mod:`kaito.workloads.tuning` for the objects (the builders ``kaito plan`` uses too) and
:mod:`~kaito.controllers.tuning.status` for the conditions and reasons.
"""

from __future__ import annotations

from typing import Any

from kaito.api import constants as c
from kaito.controllers.tuning.reconciler import (
    CONFIGMAP,
    DEFAULT_TEMPLATE_NAMESPACE,
    JOB,
    POD,
    TEMPLATE_NAME,
    WORKSPACE,
    TuningReconciler,
)
from kaito.controllers.tuning.status import TuningObserved, compute_tuning_status
from kaito.presets.catalog import Catalog
from kaito.workloads.tuning import ANNOTATION_JOB_HASH
from kreconcile.builder import Builder
from kreconcile.clock import Clock
from kreconcile.conditions import get_condition
from kreconcile.controller import Controller
from kreconcile.events import EventRecorder
from kreconcile.predicates import Funcs
from kreconcile.reconcile import Request

CONTROLLER_NAME = "tuning"

__all__ = [
    "ANNOTATION_JOB_HASH",
    "CONTROLLER_NAME",
    "DEFAULT_TEMPLATE_NAMESPACE",
    "TEMPLATE_NAME",
    "TuningObserved",
    "TuningReconciler",
    "compute_tuning_status",
    "setup_with_manager",
]


def _resource_ready(obj: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    status = obj.get("status") or {}
    cond = get_condition(status.get("conditions") or [], c.COND_RESOURCE_READY)
    return (cond or {}).get("status"), tuple(status.get("workerNodes") or ())


def _workspace_predicate() -> Funcs:
    """Tuning workspaces only; on update: spec (generation), annotations, deletion, ResourceReady or
    workerNodes changed. The controller's own status writes do not come back as events."""

    def is_tuning(obj: dict[str, Any]) -> bool:
        return obj.get("tuning") is not None

    def update(old: dict[str, Any], new: dict[str, Any]) -> bool:
        if not is_tuning(new):
            return False
        o, n = old.get("metadata") or {}, new.get("metadata") or {}
        if any(o.get(k) != n.get(k) for k in ("generation", "annotations", "deletionTimestamp")):
            return True
        return _resource_ready(old) != _resource_ready(new)

    return Funcs(create=is_tuning, update=update, delete=is_tuning, generic=is_tuning)


def _by_workspace_labels(obj: dict[str, Any]) -> list[Request]:
    labels = obj["metadata"].get("labels") or {}
    name, namespace = labels.get(c.LABEL_WORKSPACE_NAME), labels.get(c.LABEL_WORKSPACE_NAMESPACE)
    return [Request(namespace, name)] if name and namespace else []


def setup_with_manager(
    manager: Any,
    *,
    version: str | None = None,
    skip_name_validation: bool = False,
    clock: Clock | None = None,
    catalog: Catalog | None = None,
    template_namespace: str = DEFAULT_TEMPLATE_NAMESPACE,
    max_concurrent_reconciles: int = 2,
) -> Controller:
    """Register the tuning controller with ``manager``; returns the controller.

    Args:
        manager: a :class:`kreconcile.manager.Manager`.
        version: kaito-py version for its own images (default: installed).
        skip_name_validation: allow a second controller of this name in the process (tests).
        clock: condition and event timestamps.
        catalog: presets (default: packaged).
        template_namespace: namespace of the ``lora-params-template`` / ``qlora-params-template`` ConfigMaps
            (default ``kaito-workspace``, the operator's); missing templates fall back to kaito-py's packaged
            defaults (:mod:`kaito.runtime.tuning.defaults`).
        max_concurrent_reconciles: workspaces reconciled in parallel (tuning jobs are few; 2).

    Watches: tuning Workspaces (see :func:`_workspace_predicate`), owned Jobs and ConfigMaps, Pods labelled with
    the workspace (a running Job's pod problems), and ConfigMaps named by a workspace's ``tuning.config`` (a
    changed user config re-runs the Job).
    """
    recorder = EventRecorder(manager.api_reader, "kaito.sh/tuning-controller", clock=clock)
    reconciler = TuningReconciler(
        manager.client,
        manager.api_reader,
        catalog=catalog,
        recorder=recorder,
        version=version,
        template_namespace=template_namespace,
        clock=clock,
    )
    cache = manager.cache

    def configmap_to_workspaces(cm: dict[str, Any]) -> list[Request]:
        meta = cm["metadata"]
        informer = cache.get_informer(WORKSPACE)
        requests = []
        for ws in informer.list() if hasattr(informer, "list") else []:
            wmeta = ws["metadata"]
            config = (ws.get("tuning") or {}).get("config")
            if config == meta["name"] and wmeta.get("namespace") == meta.get("namespace"):
                requests.append(Request(wmeta.get("namespace"), wmeta["name"]))
        return requests

    builder = (
        Builder(manager)
        .named(CONTROLLER_NAME)
        .for_(WORKSPACE, predicates=[_workspace_predicate()])
        .owns(JOB)
        .owns(CONFIGMAP)
        .watches(POD, _by_workspace_labels)
        .watches(CONFIGMAP, configmap_to_workspaces)
        .with_options(max_concurrent_reconciles=max_concurrent_reconciles, skip_name_validation=skip_name_validation)
    )
    return builder.complete(reconciler)


