"""Object storage with one global resourceVersion, a bounded per-resource event log and watch fan-out.

Committed objects are immutable dicts: every write stores a fresh object and never mutates a stored one, so events
and responses can share them. ``resourceVersion`` is a single counter for the whole server, strictly increasing
(reference item 2), rendered as a decimal string; clients must treat it as opaque. Each resource keeps its last
``window`` events for watch resume; a watch from an older version gets 410 Expired (item 8). A watcher whose
backlog exceeds ``max_queue`` events is closed, as the real server's watch cache drops too-slow watchers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]
"""A resource's storage key: (group, plural)."""


@dataclass(frozen=True)
class Event:
    """A committed change. ``type`` is ADDED, MODIFIED or DELETED; ``obj`` the new (or last) state; ``old`` the
    previous state (None for ADDED)."""

    rv: int
    key: Key
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None
    encoded: dict[tuple[str, str], bytes] = field(default_factory=dict, compare=False)
    """Serialized watch lines by (event type, apiVersion), shared by all watchers (encode once per event)."""

    @property
    def namespace(self) -> str:
        return str(self.obj.get("metadata", {}).get("namespace") or "")


WatchItem = tuple[str, dict[str, Any], dict[tuple[str, str], bytes]]
"""(event type, object, the event's shared encoding cache)."""


@dataclass(eq=False)
class Watcher:
    """One watch stream's subscription: events for ``key`` in ``namespace`` (None = all) passing ``predicate``.

    Events accumulate in ``pending``; ``waiter`` (set by the stream while it has nothing to send) is resolved
    when one arrives or the watch is closed, so delivering an event costs no task creation.
    """

    key: Key
    namespace: str | None
    predicate: Callable[[dict[str, Any]], bool]
    max_queue: int
    pending: deque[WatchItem] = field(default_factory=deque)
    waiter: asyncio.Future[None] | None = None
    closed: bool = False
    abort: bool = False

    def wake(self) -> None:
        """Resolve the stream's waiter, if it is waiting."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def offer(self, event: Event) -> None:
        """Translate a store event into this watcher's view (selector transitions become ADDED/DELETED)."""
        if self.closed:
            return
        if self.namespace is not None and event.namespace != self.namespace:
            return
        new_match = self.predicate(event.obj)
        if event.type == "ADDED":
            if new_match:
                self._put("ADDED", event)
        elif event.type == "DELETED":
            if new_match or (event.old is not None and self.predicate(event.old)):
                self._put("DELETED", event)
        else:
            old_match = event.old is not None and self.predicate(event.old)
            if new_match and old_match:
                self._put("MODIFIED", event)
            elif new_match:
                self._put("ADDED", event)
            elif old_match:
                self._put("DELETED", event)

    def _put(self, kind: str, event: Event) -> None:
        if len(self.pending) >= self.max_queue:
            self.close()
            return
        self.pending.append((kind, event.obj, event.encoded))
        self.wake()

    def close(self, abort: bool = False) -> None:
        """End the stream cleanly, or with ``abort`` drop the TCP connection (the client re-watches)."""
        if not self.closed:
            self.abort = abort
            self.closed = True
            self.wake()


class Store:
    """All objects, keyed by resource then ``(namespace, name)`` (namespace ``""`` for cluster-scoped).

    ``window`` is the number of events retained per resource for watch resume; ``max_queue`` the per-watcher
    backlog after which a slow watcher is closed.
    """

    def __init__(self, window: int = 1000, max_queue: int = 100_000) -> None:
        if window < 1:
            raise ValueError("watch_window must be >= 1 (events retained per resource for watch resume)")
        self.rv = 0
        self.start_rv = 0
        self.last_rv: dict[Key, int] = {}
        self.window = window
        self.max_queue = max_queue
        self.objects: dict[Key, dict[tuple[str, str], dict[str, Any]]] = {}
        self.logs: dict[Key, deque[Event]] = {}
        self.dropped_upto: dict[Key, int] = {}
        self.watchers: dict[Key, set[Watcher]] = {}
        self.by_uid: dict[str, tuple[Key, str, str]] = {}
        self.listeners: list[Callable[[Event], None]] = []

    # ---- reads -------------------------------------------------------------------------------------------
    def get(self, key: Key, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object or None."""
        return self.objects.get(key, {}).get((namespace, name))

    def items(self, key: Key, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a resource sorted by (namespace, name); ``namespace`` None means all namespaces."""
        bucket = self.objects.get(key, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [bucket[k] for k in keys]

    def keys(self) -> Iterable[Key]:
        """The resources that have (or had) objects."""
        return list(self.objects)

    def by_uid_lookup(self, uid: str) -> dict[str, Any] | None:
        """The live object with this uid, or None."""
        loc = self.by_uid.get(uid)
        return None if loc is None else self.get(loc[0], loc[1], loc[2])

    # ---- writes ------------------------------------------------------------------------------------------
    def commit(self, key: Key, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Store ``obj`` (a fresh dict the caller no longer mutates) at a new resourceVersion; emits ADDED or
        MODIFIED. Returns the stored object."""
        self.rv += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.rv)
        ns, name = meta.get("namespace") or "", meta["name"]
        self.objects.setdefault(key, {})[(ns, name)] = obj
        if meta.get("uid"):
            self.by_uid[meta["uid"]] = (key, ns, name)
        self._emit(Event(self.rv, key, "MODIFIED" if old is not None else "ADDED", obj, old))
        return obj

    def remove(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Delete the object (``obj`` is its final state, a fresh dict); emits DELETED carrying the deletion's
        resourceVersion. Returns the final object."""
        self.rv += 1
        meta = obj["metadata"]
        old = self.objects.get(key, {}).pop((meta.get("namespace") or "", meta["name"]), None)
        meta["resourceVersion"] = str(self.rv)
        self.by_uid.pop(meta.get("uid", ""), None)
        self._emit(Event(self.rv, key, "DELETED", obj, old))
        return obj

    def restore(self, key: Key, obj: dict[str, Any]) -> None:
        """Load an object from persistence without an event (its resourceVersion is kept)."""
        meta = obj["metadata"]
        self.objects.setdefault(key, {})[(meta.get("namespace") or "", meta["name"])] = obj
        if meta.get("uid"):
            self.by_uid[meta["uid"]] = (key, meta.get("namespace") or "", meta["name"])
        self.rv = max(self.rv, int(meta.get("resourceVersion") or 0))

    def _emit(self, event: Event) -> None:
        self.last_rv[event.key] = event.rv
        log = self.logs.setdefault(event.key, deque())
        log.append(event)
        while len(log) > self.window:
            dropped = log.popleft()
            self.dropped_upto[event.key] = dropped.rv
        for watcher in list(self.watchers.get(event.key, ())):
            watcher.offer(event)
        for listener in self.listeners:
            listener(event)

    # ---- watch -------------------------------------------------------------------------------------------
    def too_old(self, key: Key, since: int) -> int | None:
        """If a watch from ``since`` cannot be served from the log, the oldest version it can resume from.

        The log starts at :attr:`start_rv` (set when the server starts), as the real watch cache starts from its
        initial list: a watch from an older version is 410 even before the window fills."""
        dropped = self.dropped_upto.get(key, self.start_rv)
        return dropped if since < dropped else None

    def subscribe(
        self,
        key: Key,
        namespace: str | None,
        predicate: Callable[[dict[str, Any]], bool],
        since: int | None,
    ) -> tuple[Watcher, list[WatchItem]]:
        """Register a watcher and compute the events it must see first, atomically (no gap, no duplicate).

        ``since`` None: ADDED for every current matching object (the initial burst); else the logged events
        with a version > ``since`` (the caller checked :meth:`too_old` first).
        """
        watcher = Watcher(key, namespace, predicate, self.max_queue)
        initial: list[WatchItem] = []
        if since is None:
            initial = [("ADDED", o, {}) for o in self.items(key, namespace) if predicate(o)]
        else:
            replay = Watcher(key, namespace, predicate, max_queue=1 << 60)
            for event in self.logs.get(key, ()):
                if event.rv > since:
                    replay.offer(event)
            initial = list(replay.pending)
        self.watchers.setdefault(key, set()).add(watcher)
        return watcher, initial

    def unsubscribe(self, watcher: Watcher) -> None:
        """Forget a watcher (its stream ended)."""
        self.watchers.get(watcher.key, set()).discard(watcher)

    def close_watchers(self, key: Key | None = None, abort: bool = False) -> int:
        """Close every watch stream (of one resource when ``key`` is given); returns how many."""
        count = 0
        for k, watchers in self.watchers.items():
            if key is None or k == key:
                for w in list(watchers):
                    w.close(abort)
                    count += 1
        return count

    def watcher_count(self) -> int:
        """Open watch subscriptions."""
        return sum(len(w) for w in self.watchers.values())
