"""A shared informer: one list+watch per kind, an indexed in-memory store, and event handlers.

How it keeps the store equal to the server (client-go's Reflector + DeltaFIFO + Indexer, without the FIFO):

1. **List** every object (paginated, 500 per page; the first list with ``resourceVersion=0`` so a real server may
   answer from its watch cache) and remember the list's ``resourceVersion``. On the first list
   every object is delivered as ``on_add(obj, is_in_initial_list=True)`` and :meth:`SharedInformer.has_synced`
   turns True.
2. **Watch** from that resourceVersion with ``allowWatchBookmarks`` and a server timeout drawn uniformly from
   5–10 minutes (so many informers don't reconnect in lockstep). ADDED/MODIFIED/DELETED update the store and
   call ``on_add``/``on_update``/``on_delete``; BOOKMARK only advances the resourceVersion. When the server ends
   the watch normally, watch again from the last resourceVersion.
3. **410 Expired** (the resourceVersion fell out of the server's window): **relist** and diff against the store:
   objects that vanished are delivered as ``on_delete(last_known_state)`` (client-go's
   ``DeletedFinalStateUnknown``), changed ones as ``on_update(old, new)``, new ones as ``on_add(obj, True)``.
   Unchanged objects (same resourceVersion) are not re-delivered. No update is lost: the relist is a consistent
   snapshot newer than anything watched.
4. **Errors** (connection refused, dropped streams, 5xx): wait with exponential backoff — 800 ms doubling to 30 s,
   each wait stretched by up to 100 % random jitter, reset after 2 minutes without failures (client-go's
   reflector backoff manager) — then watch again from the last resourceVersion (or list again if none).

Handlers run synchronously on the informer's task, in registration order, and must only do cheap work (enqueue).
An exception in a handler is logged and does not stop the informer. Objects handed to handlers and returned by
the store accessors are the cache's own: never mutate them (the :class:`~kreconcile.cache.Cache` hands out copies).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import structlog

from kreconcile.clock import Clock, RealClock
from kreconcile.errors import Expired
from kreconcile.gvk import GVK
from kreconcile.handler import EventHandler

log = structlog.get_logger("kreconcile.informer")

Transform = Callable[[dict[str, Any]], dict[str, Any]]
"""Applied to every object before it is stored (may mutate and return its argument)."""
IndexFunc = Callable[[dict[str, Any]], list[str]]
"""Returns the index values of an object (controller-runtime's ``IndexerFunc``); ``[]`` to leave it out."""

NAMESPACE_INDEX = "namespace"
"""Name of the built-in index from ``metadata.namespace`` to objects (cluster-scoped objects are not indexed)."""

WATCH_TIMEOUT_MIN = 300.0
"""Shortest server-side watch timeout in seconds (client-go's reflector: minWatchTimeout = 5 min)."""
BACKOFF_INITIAL, BACKOFF_CAP, BACKOFF_RESET = 0.8, 30.0, 120.0
"""Reflector backoff: first wait, longest wait, and the quiet period after which it starts over (seconds)."""


class ListWatcher(Protocol):
    """What the informer needs from a client (:class:`kreconcile.client.Client` satisfies it)."""

    async def list_all(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        page_size: int = 500,
        resource_version: str | None = None,
    ) -> dict[str, Any]: ...

    def watch(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The default transform: drop ``metadata.managedFields`` (server-side apply bookkeeping, often half of an
    object's size and never needed by reconcilers)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def object_key(obj: Mapping[str, Any]) -> str:
    """The store key: ``"namespace/name"``, or ``"name"`` for cluster-scoped objects (client-go's
    ``MetaNamespaceKeyFunc``)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _namespace_index(obj: dict[str, Any]) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def _rv(obj: Mapping[str, Any]) -> str | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv else None


class _Backoff:
    """Exponential backoff with jitter that resets after a quiet period (wait.NewExponentialBackoffManager)."""

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self._clock, self._rng = clock, rng
        self._delay = 0.0
        self._last_failure: float | None = None

    def next(self) -> float:
        now = self._clock.now()
        if self._last_failure is None or now - self._last_failure > BACKOFF_RESET:
            self._delay = BACKOFF_INITIAL
        else:
            self._delay = min(BACKOFF_CAP, self._delay * 2)
        self._last_failure = now
        return self._delay * (1.0 + self._rng.random())


class _Registration:
    """A handler's registration; :meth:`has_synced` turns True once it got every object of the initial list."""

    def __init__(self, handler: EventHandler) -> None:
        self.handler = handler
        self.synced = False

    def has_synced(self) -> bool:
        return self.synced


class SharedInformer:
    """Lists and watches one kind and keeps an indexed store of it. Implements
    :class:`kreconcile.handler.Informer` and :class:`kreconcile.runnable.Runnable`.

    Args:
        client: a :class:`~kreconcile.client.Client` (or any :class:`ListWatcher`).
        gvk: the kind to watch.
        namespace: watch only this namespace (ignored by the server for cluster-scoped kinds); None = all.
        label_selector, field_selector: server-side filters (string or ``{key: value}``).
        transform: applied to each object before it is stored; default drops ``managedFields``.
        resync_period: seconds between redeliveries of every object as ``on_update(obj, obj)``; None (default)
            disables resync. controller-runtime uses 10 h; level-based reconcilers rarely need it.
        clock, rng: injectable time and randomness (backoff jitter, watch timeouts).
        page_size: objects per list page.
    """

    def __init__(
        self,
        client: ListWatcher,
        gvk: GVK,
        namespace: str | None = None,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        transform: Transform | None = strip_managed_fields,
        resync_period: float | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        page_size: int = 500,
    ) -> None:
        if resync_period is not None and resync_period <= 0:
            raise ValueError(f"resync_period must be > 0 seconds or None (got {resync_period})")
        self.client = client
        self.gvk = gvk
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.resync_period = resync_period
        self.page_size = page_size
        self._clock = clock or RealClock()
        self._rng = rng or random.Random()
        self._items: dict[str, dict[str, Any]] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: _namespace_index}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        self._handlers: list[_Registration] = []
        self._synced = False
        self._synced_event: asyncio.Event | None = None
        self._running = False
        self.last_sync_resource_version: str | None = None
        """The resourceVersion the store is known to be current at (from the last list, event or bookmark)."""
        self.lists = 0
        """How many lists this informer has made (1 after the initial list; each 410 or error relist adds one)."""

    # ---------------------------------------------------------------- store reads

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached object for ``"namespace/name"`` (or ``"name"``), not a copy; None when absent."""
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The cached object ``name`` in ``namespace`` (not a copy), or None."""
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def keys(self) -> builtins.list[str]:
        """Every store key."""
        return list(self._items)

    def list(self) -> list[dict[str, Any]]:
        """Every cached object (not copies)."""
        return list(self._items.values())

    def by_index(self, index: str, value: str) -> builtins.list[dict[str, Any]]:
        """Cached objects (not copies) whose ``index`` function returned ``value``.

        Raises:
            KeyError: no index named ``index``; add it with :meth:`add_index`.
        """
        if index not in self._indices:
            raise KeyError(f"informer for {self.gvk} has no index {index!r}; add it with add_index({index!r}, fn)")
        keys = self._indices[index].get(value)
        if not keys:
            return []
        return [self._items[k] for k in keys]

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Add an index (e.g. ``"spec.nodeName"`` → ``lambda o: [o["spec"].get("nodeName", "")]``); objects already
        stored are indexed at once.

        Raises:
            ValueError: an index with this name exists.
        """
        if name in self._indexers:
            raise ValueError(f"informer for {self.gvk} already has an index {name!r}")
        self._indexers[name] = fn
        idx: dict[str, set[str]] = {}
        self._indices[name] = idx
        for key, obj in self._items.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)

    # ---------------------------------------------------------------- handlers

    def add_event_handler(self, handler: EventHandler) -> _Registration:
        """Register ``handler``. If the store is already synced it first receives ``on_add(obj, True)`` for every
        cached object (before this returns); otherwise it gets them with the initial list."""
        reg = _Registration(handler)
        self._handlers.append(reg)
        if self._synced:
            for obj in list(self._items.values()):
                self._call(reg, "on_add", obj, True)
            reg.synced = True
        return reg

    def remove_event_handler(self, registration: _Registration) -> None:
        """Stop delivering to a handler (no-op if already removed)."""
        with contextlib.suppress(ValueError):
            self._handlers.remove(registration)

    def has_synced(self) -> bool:
        """True once the first list has been stored (and delivered to the handlers registered by then)."""
        return self._synced

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`has_synced`; returns False if ``timeout`` (wall seconds) passes first."""
        if self._synced:
            return True
        if self._synced_event is None:
            self._synced_event = asyncio.Event()
        try:
            await asyncio.wait_for(self._synced_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _call(self, reg: _Registration, method: str, *args: Any) -> None:
        try:
            getattr(reg.handler, method)(*args)
        except Exception:
            log.exception("informer handler failed", gvk=str(self.gvk), handler_method=method)

    def _dispatch(self, method: str, *args: Any) -> None:
        handlers = self._handlers
        if len(handlers) == 1:
            self._call(handlers[0], method, *args)
            return
        for reg in list(handlers):
            self._call(reg, method, *args)

    # ---------------------------------------------------------------- store writes

    def _index_add(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            for v in fn(obj):
                bucket = idx.get(v)
                if bucket is None:
                    idx[v] = {key}
                else:
                    bucket.add(key)

    def _index_remove(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            for v in fn(obj):
                bucket = idx.get(v)
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del idx[v]

    def _apply_event(self, etype: str, obj: dict[str, Any]) -> None:
        rv = _rv(obj)
        if etype == "BOOKMARK":
            if rv:
                self.last_sync_resource_version = rv
            return
        if self.transform is not None:
            obj = self.transform(obj)
        key = object_key(obj)
        if etype == "DELETED":
            old = self._items.pop(key, None)
            if old is not None:
                self._index_remove(key, old)
            self.last_sync_resource_version = rv or self.last_sync_resource_version
            self._dispatch("on_delete", obj)
            return
        old = self._items.get(key)
        self._items[key] = obj
        if old is not None:
            self._index_remove(key, old)
        self._index_add(key, obj)
        self.last_sync_resource_version = rv or self.last_sync_resource_version
        if old is None:
            self._dispatch("on_add", obj, False)
        else:
            self._dispatch("on_update", old, obj)

    def _replace(self, items: builtins.list[dict[str, Any]], resource_version: str | None) -> None:
        """Store a full list, diffing it against the store and delivering the differences."""
        transform = self.transform
        new: dict[str, dict[str, Any]] = {}
        for obj in items:
            if transform is not None:
                obj = transform(obj)
            new[object_key(obj)] = obj
        old_items = self._items
        self._items = new
        self._indices = {name: {} for name in self._indexers}
        for key, obj in new.items():
            self._index_add(key, obj)
        self.last_sync_resource_version = resource_version
        first = not self._synced
        for key, gone in old_items.items():
            if key not in new:
                self._dispatch("on_delete", gone)
        for key, obj in new.items():
            prev = old_items.get(key)
            if prev is None:
                self._dispatch("on_add", obj, True)
            elif _rv(prev) != _rv(obj):
                self._dispatch("on_update", prev, obj)
        if first:
            self._synced = True
            for reg in self._handlers:
                reg.synced = True
            if self._synced_event is not None:
                self._synced_event.set()
            log.debug("informer synced", gvk=str(self.gvk), objects=len(new), resource_version=resource_version)

    # ---------------------------------------------------------------- list & watch

    async def start(self, stop: asyncio.Event) -> None:
        """Runnable entry point: same as :meth:`run`."""
        await self.run(stop)

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch, until ``stop`` is set. Errors are retried forever with backoff.

        Raises:
            RuntimeError: the informer is already running.
        """
        if self._running:
            raise RuntimeError(f"informer for {self.gvk} is already running")
        if self._synced_event is None:
            self._synced_event = asyncio.Event()
        self._running = True
        loop_task = asyncio.create_task(self._loop(), name=f"informer {self.gvk}")
        tasks: set[asyncio.Task[None]] = {loop_task}
        if self.resync_period:
            tasks.add(asyncio.create_task(self._resync_loop(self.resync_period), name=f"resync {self.gvk}"))
        stop_task = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({loop_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if loop_task in done:
                loop_task.result()  # the loop only ends by raising a bug; surface it
        finally:
            stop_task.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(stop_task, *tasks, return_exceptions=True)
            self._running = False

    async def _list(self) -> None:
        # the first list may come from the server's watch cache (resourceVersion "0", as client-go's reflector
        # does); relists after a 410 or an error ask for a consistent, current list
        result = await self.client.list_all(
            self.gvk,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            page_size=self.page_size,
            resource_version="0" if self.lists == 0 else None,
        )
        self.lists += 1
        self._replace(builtins.list(result.get("items") or ()), _rv(result))

    async def _loop(self) -> None:
        backoff = _Backoff(self._clock, self._rng)
        need_list = True
        expired_streak = 0
        while True:
            if need_list or self.last_sync_resource_version is None:
                try:
                    await self._list()
                    need_list = False
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    delay = backoff.next()
                    log.warning("informer list failed", gvk=str(self.gvk), error=str(err), retry_in_s=round(delay, 3))
                    await self._clock.sleep(delay)
                    continue
                if self.last_sync_resource_version is None:  # a server bug; never spin on it
                    delay = backoff.next()
                    log.warning("informer list returned no resourceVersion", gvk=str(self.gvk), retry_in_s=delay)
                    await self._clock.sleep(delay)
                    continue
            timeout = int(WATCH_TIMEOUT_MIN * (1.0 + self._rng.random()))
            started, events = self._clock.now(), 0
            try:
                stream = self.client.watch(
                    self.gvk,
                    self.namespace,
                    resource_version=self.last_sync_resource_version,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    timeout_seconds=timeout,
                    allow_bookmarks=True,
                )
                try:
                    async for etype, obj in stream:
                        events += 1
                        self._apply_event(etype, obj)
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
            except asyncio.CancelledError:
                raise
            except Expired:
                # the resourceVersion is too old: relist at once the first time, with backoff if it repeats
                need_list = True
                expired_streak += 1
                log.info("informer watch expired, relisting", gvk=str(self.gvk), streak=expired_streak)
                if expired_streak > 1:
                    await self._clock.sleep(backoff.next())
                continue
            except Exception as err:
                delay = backoff.next()
                log.warning("informer watch failed", gvk=str(self.gvk), error=str(err), retry_in_s=round(delay, 3))
                await self._clock.sleep(delay)
                continue
            if events:
                expired_streak = 0
            if events == 0 and self._clock.now() - started < 1.0:
                # a watch that closes at once without events is a failure (client-go: "very short watch")
                await self._clock.sleep(backoff.next())

    async def _resync_loop(self, period: float) -> None:
        while True:
            await self._clock.sleep(period)
            if not self._synced:
                continue
            for obj in list(self._items.values()):
                self._dispatch("on_update", obj, obj)
