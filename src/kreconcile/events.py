"""An ``events.k8s.io/v1`` Event recorder (client-go's ``tools/events``), so reconcilers can tell users what
happened in ``kubectl describe`` / ``kubectl get events``.

:meth:`EventRecorder.event` never blocks and never raises for API failures: events are written in order by one
background task (failures are logged). Repeats of the same event — same object, type, reason, action, note and
related object — within 6 minutes of the last occurrence are aggregated: the first is created, later ones bump
``series.count`` and ``series.lastObservedTime`` on it instead of creating new Events (client-go's isomorphic event
series). :meth:`EventRecorder.flush` waits until everything recorded so far has been written.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from kreconcile.clock import Clock, RealClock
from kreconcile.errors import NotFound
from kreconcile.leaderelection import format_micro_time

log = structlog.get_logger("kreconcile.events")

EVENT_TYPES = ("Normal", "Warning")
"""The only valid ``type`` values."""
SERIES_WINDOW = 360.0
"""Seconds after the last occurrence during which a repeat joins the series (client-go: 6 minutes)."""
MAX_NOTE = 1024
"""The API server rejects notes longer than 1 kB; longer ones are truncated."""


class EventWriter(Protocol):
    """What the recorder needs from a client (:class:`kreconcile.client.Client` satisfies it)."""

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch(self, obj: Any, patch: Any, patch_type: Any = "merge") -> dict[str, Any]: ...


def object_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ObjectReference`` of a wire-shape object (apiVersion, kind, name, namespace, uid, resourceVersion).

    Raises:
        ValueError: the object lacks apiVersion, kind or metadata.name.
    """
    meta = obj.get("metadata") or {}
    if not obj.get("apiVersion") or not obj.get("kind") or not meta.get("name"):
        raise ValueError("event regarding/related object needs apiVersion, kind and metadata.name")
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"]}
    for src, dst in (("namespace", "namespace"), ("uid", "uid"), ("resourceVersion", "resourceVersion")):
        if meta.get(src):
            ref[dst] = meta[src]
    return ref


@dataclass
class _Series:
    event: dict[str, Any]
    count: int
    last_seen: float


_Item = tuple[tuple[Any, ...], dict[str, Any], float, float]
"""(aggregation key, event, monotonic time, wall time) of one recorded occurrence."""


def _ref_key(ref: Mapping[str, Any] | None) -> tuple[Any, ...]:
    if not ref:
        return ()
    return tuple(ref.get(k) for k in ("apiVersion", "kind", "namespace", "name", "uid"))


class EventRecorder:
    """Records Events about objects on behalf of one controller.

    Args:
        client: writes Events (use the live API client, not a cached one).
        component: ``reportingController``, e.g. ``"kaito.sh/workspace-controller"``.
        reporting_instance: ``reportingInstance`` (default: the host name).
        clock: for timestamps and the series window.
    """

    def __init__(
        self, client: EventWriter, component: str, reporting_instance: str | None = None, *,
        clock: Clock | None = None,
    ) -> None:
        if not component:
            raise ValueError("EventRecorder needs a component name (the reportingController)")
        self.client = client
        self.component = component
        self.reporting_instance = (reporting_instance or socket.gethostname())[:128]
        self._clock = clock or RealClock()
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._seq = itertools.count()
        self.written = 0
        """Events created or series updates patched so far."""

    def event(
        self,
        regarding: Mapping[str, Any],
        type: str,
        reason: str,
        note: str,
        action: str,
        related: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that ``action`` happened to ``regarding`` because of ``reason`` (CamelCase, e.g.
        ``"NodeClaimCreated"``), with a human ``note``. Returns at once; the write happens in the background.

        Raises:
            ValueError: ``type`` is not Normal/Warning, or reason/action is empty, or the object has no name.
        """
        if type not in EVENT_TYPES:
            raise ValueError(f"event type {type!r} must be 'Normal' or 'Warning'")
        if not reason or not action:
            raise ValueError("event reason and action must be non-empty (e.g. reason='Created', action='Create')")
        ref = object_reference(regarding)
        rel = object_reference(related) if related is not None else None
        note = note if len(note) <= MAX_NOTE else note[: MAX_NOTE - 3] + "..."
        now = self._clock.wall()
        stamp = int(now * 1e9) + next(self._seq)
        ev: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{ref['name']}.{stamp:x}", "namespace": ref.get("namespace") or "default"},
            "eventTime": format_micro_time(now),
            "reportingController": self.component,
            "reportingInstance": self.reporting_instance,
            "action": action[:128],
            "reason": reason[:128],
            "type": type,
            "note": note,
            "regarding": ref,
        }
        if rel is not None:
            ev["related"] = rel
        key = (_ref_key(ref), _ref_key(rel), type, reason, action, note)
        self._ensure_worker().put_nowait((key, ev, self._clock.now(), now))

    def _ensure_worker(self) -> asyncio.Queue[_Item | None]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(self._queue), name="event-recorder")
        return self._queue

    async def _work(self, queue: asyncio.Queue[_Item | None]) -> None:
        while True:
            item = await queue.get()
            try:
                if item is None:
                    return
                await self._write(*item)
            except Exception as err:
                log.warning("event write failed", component=self.component, error=str(err))
            finally:
                queue.task_done()

    async def _write(self, key: tuple[Any, ...], ev: dict[str, Any], now: float, wall: float) -> None:
        series = self._series.get(key)
        if series is not None and now - series.last_seen <= SERIES_WINDOW:
            series.count += 1
            series.last_seen = now
            patch = {"series": {"count": series.count, "lastObservedTime": format_micro_time(wall)}}
            try:
                series.event = await self.client.patch(series.event, patch, "merge")
                self.written += 1
                return
            except NotFound:
                pass  # the Event expired (1 h TTL) or was deleted: start a new one
        created = await self.client.create(ev)
        self._series[key] = _Series(created, 1, now)
        self.written += 1
        if len(self._series) > 4096:  # forget series that can no longer grow
            for k in [k for k, s in self._series.items() if now - s.last_seen > SERIES_WINDOW]:
                del self._series[k]

    async def flush(self) -> None:
        """Wait until every event recorded so far has been written (or has failed and been logged)."""
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self) -> None:
        """Flush, then stop the background writer."""
        if self._queue is not None and self._worker is not None and not self._worker.done():
            await self.flush()
            self._queue.put_nowait(None)
            await self._worker
        self._worker = None
