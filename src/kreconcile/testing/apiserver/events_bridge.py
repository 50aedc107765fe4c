"""One Event, two APIs: ``events.k8s.io/v1`` Events also appear as ``core/v1`` Events.

On a real cluster both APIs serve the same stored objects (the events.k8s.io group is a different view of the
core Event). kreconcile's recorder writes events.k8s.io/v1; ``kubectl describe`` reads core/v1 Events with an
``involvedObject.*`` field selector. The emulator keeps a store per resource, so this bridge mirrors each
events.k8s.io/v1 write into a core/v1 Event of the same name with the fields converted as the real server's
conversion does (``regarding`` → ``involvedObject``, ``note`` → ``message``, ``series.count`` → ``count``,
``reportingController`` → ``source.component``...). Only that direction is bridged: core/v1 writes stay core.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from .storage import Event, Store

EVENTS_V1_KEY = ("events.k8s.io", "events")
CORE_KEY = ("", "events")
_NS = uuid.UUID("7b0c6d56-2d5e-4d4f-9c39-8b8c4f6f2a11")


def _seconds(stamp: str | None) -> str | None:
    """``2026-01-01T00:00:00.123456Z`` → ``2026-01-01T00:00:00Z`` (core timestamps have second precision)."""
    if not stamp:
        return None
    return stamp.split(".")[0].rstrip("Z") + "Z"


def to_core(obj: dict[str, Any]) -> dict[str, Any]:
    """The core/v1 view of an events.k8s.io/v1 Event."""
    meta = copy.deepcopy(obj.get("metadata") or {})
    for key in ("resourceVersion", "managedFields", "generation"):
        meta.pop(key, None)
    if meta.get("uid"):
        meta["uid"] = str(uuid.uuid5(_NS, meta["uid"]))
    series = obj.get("series") or {}
    event_time = obj.get("eventTime")
    first = obj.get("deprecatedFirstTimestamp") or _seconds(event_time) or meta.get("creationTimestamp")
    last = (obj.get("deprecatedLastTimestamp") or _seconds(series.get("lastObservedTime")) or first)
    core: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta,
        "involvedObject": copy.deepcopy(obj.get("regarding") or {}),
        "reason": obj.get("reason", ""),
        "message": obj.get("note", ""),
        "type": obj.get("type", ""),
        "source": {"component": obj.get("reportingController", "")} | (
            {"host": obj["deprecatedSource"]["host"]} if (obj.get("deprecatedSource") or {}).get("host") else {}),
        "firstTimestamp": first,
        "lastTimestamp": last,
        "count": int(series.get("count") or obj.get("deprecatedCount") or 1),
        "eventTime": event_time,
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
    }
    for field in ("action", "related"):
        if obj.get(field) is not None:
            core[field] = copy.deepcopy(obj[field])
    if series:
        core["series"] = {"count": series.get("count"), "lastObservedTime": series.get("lastObservedTime")}
    return core


class EventsBridge:
    """A store listener that mirrors events.k8s.io/v1 Events into core/v1 (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_event(self, event: Event) -> None:
        """Mirror one committed events.k8s.io/v1 change."""
        if event.key != EVENTS_V1_KEY:
            return
        meta = event.obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name")
        if not name:
            return
        current = self.store.get(CORE_KEY, namespace, name)
        if event.type == "DELETED":
            if current is not None:
                final = copy.deepcopy(current)
                self.store.remove(CORE_KEY, final)
            return
        self.store.commit(CORE_KEY, to_core(event.obj), current)
