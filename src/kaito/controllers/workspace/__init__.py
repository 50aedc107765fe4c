"""The workspace controller: :class:`WorkspaceReconciler` and :func:`setup_with_manager`."""

from __future__ import annotations

from typing import Any

from kaito.api import constants as c
from kaito.controllers.workspace.endpoint import HTTPEndpointProber, Resolver, cluster_dns
from kaito.controllers.workspace.reconciler import (
    NODE,
    NODECLAIM,
    POD,
    STATEFULSET,
    WORKSPACE,
    EndpointProber,
    WorkspaceReconciler,
)
from kaito.controllers.workspace.status import Observed, compute_status
from kaito.presets.catalog import Catalog
from kreconcile.builder import Builder
from kreconcile.clock import Clock
from kreconcile.controller import Controller
from kreconcile.events import EventRecorder
from kreconcile.gvk import GVK
from kreconcile.labels import selector_from_dict
from kreconcile.predicates import Funcs, GenerationChanged, or_
from kreconcile.reconcile import Request

CONTROLLER_NAME = "workspace"

__all__ = [
    "CONTROLLER_NAME",
    "WORKSPACE",
    "EndpointProber",
    "HTTPEndpointProber",
    "Observed",
    "Resolver",
    "WorkspaceReconciler",
    "cluster_dns",
    "compute_status",
    "setup_with_manager",
]


def _by_workspace_labels(obj: dict[str, Any]) -> list[Request]:
    labels = obj["metadata"].get("labels") or {}
    name, namespace = labels.get(c.LABEL_WORKSPACE_NAME), labels.get(c.LABEL_WORKSPACE_NAMESPACE)
    return [Request(namespace, name)] if name and namespace else []


def _spec_or_metadata_changed() -> Any:
    """Generation, annotation, finalizer or deletionTimestamp changes; our own status writes are skipped."""

    def meta_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
        o, n = old.get("metadata") or {}, new.get("metadata") or {}
        return any(o.get(k) != n.get(k) for k in ("annotations", "labels", "finalizers", "deletionTimestamp"))

    return or_(GenerationChanged(), Funcs(update=meta_changed))


def setup_with_manager(
    manager: Any,
    *,
    auto_provisioning: bool = True,
    prober: EndpointProber | None = None,
    catalog: Catalog | None = None,
    version: str | None = None,
    max_concurrent_reconciles: int = 4,
    skip_name_validation: bool = False,
    clock: Clock | None = None,
) -> Controller:
    """Register the workspace controller with ``manager``; returns the controller.

    Args:
        manager: a :class:`kreconcile.manager.Manager`.
        auto_provisioning: create NodeClaims (a node provisioner such as kaito's machine controller or
            Karpenter serves them); False uses bring-your-own nodes only.
        prober: checks the inference Service for ``WorkspaceSucceeded``; default probes the in-cluster DNS name
            (:class:`HTTPEndpointProber`). ``kaito dev`` passes one resolving through the LocalCluster.
        catalog, version, clock: see :class:`WorkspaceReconciler`.
        max_concurrent_reconciles: workspaces reconciled in parallel.
        skip_name_validation: allow a second controller of this name in the process (tests).

    Watches: Workspaces (spec/metadata changes), owned StatefulSets, Services and ConfigMaps, Pods and NodeClaims
    labelled with the workspace, and Nodes (mapped to the workspaces whose label selector they match).
    """
    recorder = EventRecorder(manager.api_reader, "kaito.sh/workspace-controller", clock=clock)
    reconciler = WorkspaceReconciler(
        manager.client,
        manager.api_reader,
        auto_provisioning=auto_provisioning,
        prober=prober if prober is not None else HTTPEndpointProber(),
        catalog=catalog,
        recorder=recorder,
        version=version,
        clock=clock,
    )
    cache = manager.cache

    def node_to_workspaces(node: dict[str, Any]) -> list[Request]:
        labels = node["metadata"].get("labels") or {}
        requests = []
        informer = cache.get_informer(WORKSPACE)
        for ws in informer.list() if hasattr(informer, "list") else []:
            selector = (ws.get("resource") or {}).get("labelSelector") or {}
            if selector and selector_from_dict(selector).matches(labels):
                requests.append(Request(ws["metadata"].get("namespace"), ws["metadata"]["name"]))
        return requests

    builder = (
        Builder(manager)
        .named(CONTROLLER_NAME)
        .for_(WORKSPACE, predicates=[_spec_or_metadata_changed()])
        .owns(STATEFULSET)
        .owns(GVK("", "v1", "Service"))
        .owns(GVK("", "v1", "ConfigMap"))
        .watches(POD, _by_workspace_labels)
        .watches(NODECLAIM, _by_workspace_labels)
        .watches(NODE, node_to_workspaces)
        .with_options(max_concurrent_reconciles=max_concurrent_reconciles, skip_name_validation=skip_name_validation)
    )
    return builder.complete(reconciler)
