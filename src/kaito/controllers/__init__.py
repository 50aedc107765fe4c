"""Kaito's controllers, each a kreconcile reconciler talking to the others only through API objects.

- :mod:`kaito.controllers.workspace`: Workspace → NodeClaims (or BYO nodes) → Services + inference StatefulSet,
  conditions NodeClaimReady / NodesReady / ResourceReady / InferenceReady / WorkspaceSucceeded.
- :mod:`kaito.controllers.machine`: NodeClaim → a machine through a :class:`~kaito.provisioner.Provider`
  (upstream's gpu-provisioner role), conditions Launched / Registered / Initialized / Ready.
- :mod:`kaito.controllers.tuning`: tuning Workspaces → the tuning Job (when present in this build).

:func:`setup_controllers` wires the enabled ones into one manager; the operator binary and ``kaito dev`` use it.
"""

from __future__ import annotations

import importlib
from typing import Any

from kaito.presets.catalog import Catalog
from kaito.provisioner.base import Provider
from kreconcile.clock import Clock


def setup_controllers(
    manager: Any,
    *,
    provider: Provider | None,
    enable_workspace: bool = True,
    enable_machine: bool = True,
    enable_tuning: bool = True,
    prober: Any = None,
    catalog: Catalog | None = None,
    version: str | None = None,
    skip_name_validation: bool = False,
    tuning_template_namespace: str | None = None,
    clock: Clock | None = None,
) -> list[Any]:
    """Register kaito's controllers with ``manager``; returns the controllers created.

    Args:
        manager: a :class:`kreconcile.manager.Manager`.
        provider: the machine provider (``LocalProvider``, the Azure provider), or None for bring-your-own
            nodes only (no NodeClaims are created and the machine controller is not started).
        enable_workspace, enable_machine, enable_tuning: turn each controller off (operator flags).
        prober: the workspace controller's endpoint prober (see :mod:`kaito.controllers.workspace`).
        catalog, version, clock: passed to the controllers.
        skip_name_validation: allow several instances in one process (tests with two replicas).
        tuning_template_namespace: where the default ``lora``/``qlora-params-template`` ConfigMaps live (the
            operator's namespace; the tuning controller's default is ``kaito-workspace``).
    """
    from kaito.controllers import machine, workspace

    controllers: list[Any] = []
    if enable_workspace:
        controllers.append(workspace.setup_with_manager(
            manager, auto_provisioning=provider is not None, prober=prober, catalog=catalog, version=version,
            skip_name_validation=skip_name_validation, clock=clock,
        ))
    if enable_machine and provider is not None:
        controllers.append(machine.setup_with_manager(
            manager, provider, catalog=catalog, skip_name_validation=skip_name_validation, clock=clock,
        ))
    if enable_tuning:
        try:
            tuning = importlib.import_module("kaito.controllers.tuning")
        except ModuleNotFoundError as exc:
            if exc.name != "kaito.controllers.tuning":
                raise
        else:
            extra = {"template_namespace": tuning_template_namespace} if tuning_template_namespace else {}
            controllers.append(tuning.setup_with_manager(
                manager, version=version, skip_name_validation=skip_name_validation, clock=clock, **extra,
            ))
    return controllers
