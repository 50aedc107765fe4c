"""The machine (NodeClaim) controller and its orphan sweep; :func:`setup_with_manager` wires both."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from kaito.api import constants as c
from kaito.controllers.machine.reconciler import (
    NODE,
    NODECLAIM,
    TERMINATION_FINALIZER,
    MachineReconciler,
    Observed,
    compute_status,
)
from kaito.presets.catalog import Catalog, load_catalog
from kaito.provisioner.base import Provider, ProviderError
from kreconcile.builder import Builder
from kreconcile.clock import Clock, RealClock
from kreconcile.controller import Controller
from kreconcile.errors import NotFound
from kreconcile.events import EventRecorder
from kreconcile.predicates import LabelSelector
from kreconcile.reconcile import Request

log = structlog.get_logger("kaito.controllers.machine")

CONTROLLER_NAME = "nodeclaim"
SWEEP_INTERVAL_S = 60.0
"""Seconds between orphan sweeps (machines whose NodeClaim is gone are deleted)."""

__all__ = [
    "CONTROLLER_NAME",
    "NODECLAIM",
    "TERMINATION_FINALIZER",
    "MachineReconciler",
    "Observed",
    "OrphanSweeper",
    "compute_status",
    "setup_with_manager",
]


class OrphanSweeper:
    """A leader-only runnable deleting provider machines that have no NodeClaim (e.g. a NodeClaim force-deleted
    without its finalizer, or a crash between launch and the NodeClaim's removal).

    Args:
        api: a live client (``get`` of NodeClaims must not come from a possibly stale cache).
        provider: the machine provider.
        interval: seconds between sweeps.
        clock: for the interval.
    """

    def __init__(self, api: Any, provider: Provider, *, interval: float = SWEEP_INTERVAL_S,
                 clock: Clock | None = None) -> None:
        self.api = api
        self.provider = provider
        self.interval = interval
        self.clock = clock or RealClock()
        self.deleted: list[str] = []
        """Names of orphan machines deleted so far."""

    def needs_leader_election(self) -> bool:
        """Only the leader deletes machines."""
        return True

    async def sweep_once(self) -> list[str]:
        """Delete every orphan machine now; returns their names."""
        gone: list[str] = []
        for machine in await self.provider.list():
            try:
                await self.api.get(NODECLAIM, machine.name)
            except NotFound:
                try:
                    await self.provider.delete(machine.name)
                except ProviderError as exc:
                    log.warning("orphan_machine_delete_failed", machine=machine.name, error=str(exc))
                    continue
                log.info("orphan_machine_deleted", machine=machine.name)
                gone.append(machine.name)
        self.deleted.extend(gone)
        return gone

    async def start(self, stop: asyncio.Event) -> None:
        """Sweep every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception as exc:  # a failed sweep is retried next interval
                log.warning("orphan_sweep_failed", error=str(exc))
            sleeper = asyncio.ensure_future(self.clock.sleep(self.interval))
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            waiter.cancel()


def _node_to_nodeclaim(node: dict[str, Any]) -> list[Request]:
    name = (node["metadata"].get("labels") or {}).get("karpenter.sh/nodeclaim")
    return [Request(None, name)] if name else []


def setup_with_manager(
    manager: Any,
    provider: Provider,
    *,
    catalog: Catalog | None = None,
    max_concurrent_reconciles: int = 4,
    sweep_interval: float = SWEEP_INTERVAL_S,
    skip_name_validation: bool = False,
    clock: Clock | None = None,
) -> Controller:
    """Register the NodeClaim controller (and the orphan sweeper) with ``manager``; returns the controller.

    Watches NodeClaims labelled ``karpenter.sh/nodepool=kaito`` and Nodes (mapped to their NodeClaim by the
    ``karpenter.sh/nodeclaim`` label).
    """
    catalog = catalog or load_catalog()

    def gpus_for(instance_type: str) -> int:
        sku = catalog.find_sku(instance_type)
        return sku.gpu_count if sku is not None else 0

    recorder = EventRecorder(manager.api_reader, "kaito.sh/nodeclaim-controller", clock=clock)
    reconciler = MachineReconciler(manager.client, provider, gpus_for=gpus_for, recorder=recorder, clock=clock)
    controller = (
        Builder(manager)
        .named(CONTROLLER_NAME)
        .for_(NODECLAIM, predicates=[LabelSelector(f"{c.LABEL_NODEPOOL}={c.NODEPOOL_KAITO}")], namespaced=False)
        .watches(NODE, _node_to_nodeclaim)
        .with_options(max_concurrent_reconciles=max_concurrent_reconciles, skip_name_validation=skip_name_validation)
        .complete(reconciler)
    )
    manager.add(OrphanSweeper(manager.api_reader, provider, interval=sweep_interval, clock=clock))
    return controller
