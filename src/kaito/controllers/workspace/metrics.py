"""Prometheus gauges of the workspace controller (upstream Kaito's names), on kreconcile's registry."""

from __future__ import annotations

from collections import Counter as _Tally

from prometheus_client import Gauge

from kaito.api import constants as c
from kreconcile.metrics import REGISTRY

PHASES = (*c.STATES, "Deleting")

workspace_count = Gauge(
    "kaito_workspace_count", "Number of workspaces by phase", ["phase"], registry=REGISTRY
)
workspace_preset_count = Gauge(
    "kaito_workspace_preset_count", "Number of workspaces by preset", ["preset_name"], registry=REGISTRY
)


class WorkspaceTally:
    """Remembers each workspace's (phase, preset) and publishes the counts on the two gauges."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[str, str]] = {}
        self._presets: set[str] = set()
        for phase in PHASES:
            workspace_count.labels(phase=phase).set(0)

    def observe(self, key: tuple[str, str], phase: str, preset: str) -> None:
        """Record workspace ``key`` (namespace, name) in ``phase`` with ``preset`` ("" for templates)."""
        self._seen[key] = (phase, preset)
        self._publish()

    def forget(self, key: tuple[str, str]) -> None:
        """The workspace is gone."""
        self._seen.pop(key, None)
        self._publish()

    def _publish(self) -> None:
        phases = _Tally(p for p, _ in self._seen.values())
        presets = _Tally(p for _, p in self._seen.values() if p)
        for phase in PHASES:
            workspace_count.labels(phase=phase).set(phases.get(phase, 0))
        self._presets |= set(presets)
        for preset in self._presets:
            workspace_preset_count.labels(preset_name=preset).set(presets.get(preset, 0))
