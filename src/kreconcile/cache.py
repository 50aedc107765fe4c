"""The informer cache: one :class:`~kreconcile.informer.SharedInformer` per kind, shared by every controller and
reader in the process, with copy-on-read access (controller-runtime's ``pkg/cache``).

Reads (:meth:`Cache.get`, :meth:`Cache.list`) start the kind's informer on first use and wait for it to sync, then
answer from memory with deep copies, so callers may mutate what they get without corrupting the cache. Scoping:
``default_namespaces`` restricts every namespaced kind to those namespaces (one informer per namespace, so RBAC
may be namespaced too); ``by_object`` gives a kind its own label/field selector, namespaces and transform.
"""

from __future__ import annotations

import asyncio
import builtins
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from kreconcile.clock import Clock, RealClock
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK
from kreconcile.handler import EventHandler
from kreconcile.informer import (
    NAMESPACE_INDEX,
    IndexFunc,
    ListWatcher,
    SharedInformer,
    Transform,
    strip_managed_fields,
)
from kreconcile.labels import Selector, as_selector, selector_from_labels
from kreconcile.util import deep_copy

log = structlog.get_logger("kreconcile.cache")

_UNSET: Any = object()


class CacheNotStartedError(RuntimeError):
    """A read needed an informer but the cache has not been started (``await cache.start(stop)`` or
    ``Manager.start``); use the manager's ``api_reader`` for reads before start."""


@dataclass(frozen=True)
class ObjectSelector:
    """Per-kind cache scoping (controller-runtime's ``cache.ByObject``). Unset fields fall back to the cache's
    defaults."""

    label: str | Mapping[str, str] | None = None
    """Server-side label selector for this kind's list/watch."""
    field: str | Mapping[str, str] | None = None
    """Server-side field selector (``metadata.name``, ``metadata.namespace``, ...)."""
    namespaces: Sequence[str] | None = None
    """Namespaces to cache for this kind; None = the cache's ``default_namespaces``."""
    transform: Transform | None = _UNSET
    """Transform for this kind; unset = the cache's transform; None = store objects unchanged."""


class _MultiRegistration:
    def __init__(self, owner: MultiNamespaceInformer, handler: EventHandler) -> None:
        self.owner, self.handler = owner, handler

    def has_synced(self) -> bool:
        regs = self.owner._regs.get(id(self.handler), [])
        return self.owner._resolved.is_set() and bool(regs) and all(r.has_synced() for r in regs)


class MultiNamespaceInformer:
    """One informer per namespace behind the :class:`~kreconcile.handler.Informer` interface; reads fan out over
    all of them. For a cluster-scoped kind (found out at start from discovery) a single all-namespace informer is
    used instead."""

    def __init__(self, client: ListWatcher, gvk: GVK, namespaces: Sequence[str], **informer_kwargs: Any) -> None:
        self.gvk = gvk
        self._client = client
        self._kwargs = informer_kwargs
        self.informers: dict[str | None, SharedInformer] = {
            ns: SharedInformer(client, gvk, ns, **informer_kwargs) for ns in dict.fromkeys(namespaces)
        }
        self._handlers: builtins.list[EventHandler] = []
        self._regs: dict[int, builtins.list[Any]] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._resolved = asyncio.Event()

    def _all(self) -> builtins.list[SharedInformer]:
        return builtins.list(self.informers.values())

    def add_event_handler(self, handler: EventHandler) -> _MultiRegistration:
        """Register ``handler`` on every namespace's informer (see :meth:`SharedInformer.add_event_handler`)."""
        self._handlers.append(handler)
        self._regs[id(handler)] = [i.add_event_handler(handler) for i in self._all()]
        return _MultiRegistration(self, handler)

    def has_synced(self) -> bool:
        """True once every namespace's informer has synced."""
        return self._resolved.is_set() and all(i.has_synced() for i in self._all())

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait for every namespace's informer; False if ``timeout`` seconds pass first."""

        async def wait() -> bool:
            await self._resolved.wait()
            return all(await asyncio.gather(*(i.wait_for_sync() for i in self._all())))

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return False

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Add the index to every namespace's informer (see :meth:`SharedInformer.add_index`)."""
        self._indexers[name] = fn
        for i in self._all():
            i.add_index(name, fn)

    def get_by_name(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The cached object (not a copy), or None (also for namespaces outside the scope)."""
        if None in self.informers:
            return self.informers[None].get_by_name(name, namespace)
        inf = self.informers.get(namespace)
        return inf.get_by_name(name, namespace) if inf is not None else None

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every cached object of every namespace (not copies)."""
        return [o for i in self._all() for o in i.list()]

    def by_index(self, index: str, value: str) -> builtins.list[dict[str, Any]]:
        """Objects of every namespace whose ``index`` gives ``value`` (not copies); KeyError for unknown index."""
        return [o for i in self._all() for o in i.by_index(index, value)]

    async def start(self, stop: asyncio.Event) -> None:
        """Resolve the kind's scope, then run the informers until ``stop``."""
        mapping = getattr(self._client, "mapping", None)
        if mapping is not None and not (await mapping(self.gvk)).namespaced:
            only = SharedInformer(self._client, self.gvk, None, **self._kwargs)
            for name, fn in self._indexers.items():
                only.add_index(name, fn)
            self.informers = {None: only}
            self._regs = {id(h): [only.add_event_handler(h)] for h in self._handlers}
        self._resolved.set()
        await asyncio.gather(*(i.run(stop) for i in self._all()))


AnyInformer = SharedInformer | MultiNamespaceInformer


def _label_matcher(selector: str | Mapping[str, Any] | Selector | None) -> Selector | None:
    if selector is None:
        return None
    if isinstance(selector, Mapping) and not ({"matchLabels", "matchExpressions"} & set(selector)):
        return selector_from_labels({str(k): str(v) for k, v in selector.items()})
    return as_selector(selector)


class Cache:
    """Shared informers for every kind the process reads, with copy-on-read access. A Runnable: the manager
    starts it before any controller.

    Args:
        client: the API client (list/watch, discovery).
        default_namespaces: namespaces to cache namespaced kinds in; None = all namespaces.
        transform: applied to each object before it is stored (default: drop ``managedFields``).
        by_object: per-kind :class:`ObjectSelector` overrides.
        resync_period: passed to every informer (None = no resync).
        clock: injectable time.
    """

    def __init__(
        self,
        client: ListWatcher,
        *,
        default_namespaces: Sequence[str] | None = None,
        transform: Transform | None = strip_managed_fields,
        by_object: Mapping[GVK, ObjectSelector] | None = None,
        resync_period: float | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if default_namespaces is not None and (isinstance(default_namespaces, str) or not default_namespaces):
            raise ValueError("default_namespaces must be a non-empty list of namespace names, or None for all")
        self.client = client
        self.default_namespaces = list(default_namespaces) if default_namespaces is not None else None
        self.transform = transform
        self.by_object = dict(by_object or {})
        self.resync_period = resync_period
        self._clock = clock or RealClock()
        self._rng = rng or random.Random()
        self._informers: dict[GVK, AnyInformer] = {}
        self._tasks: dict[GVK, asyncio.Task[None]] = {}
        self._stop: asyncio.Event | None = None
        self._started = False

    def needs_leader_election(self) -> bool:
        """Caches run on every replica."""
        return False

    # ---------------------------------------------------------------- informers

    def get_informer(self, gvk: GVK) -> AnyInformer:
        """The shared informer for ``gvk``, created on first call and started at once if the cache is running."""
        existing = self._informers.get(gvk)
        if existing is not None:
            return existing
        sel = self.by_object.get(gvk, ObjectSelector())
        transform = self.transform if sel.transform is _UNSET else sel.transform
        namespaces = sel.namespaces if sel.namespaces is not None else self.default_namespaces
        kwargs: dict[str, Any] = {
            "label_selector": sel.label,
            "field_selector": sel.field,
            "transform": transform,
            "resync_period": self.resync_period,
            "clock": self._clock,
            "rng": self._rng,
        }
        inf: AnyInformer
        if namespaces is None:
            inf = SharedInformer(self.client, gvk, None, **kwargs)
        else:
            inf = MultiNamespaceInformer(self.client, gvk, namespaces, **kwargs)
        self._informers[gvk] = inf
        if self._started and self._stop is not None:
            self._launch(gvk, inf)
        return inf

    def informers(self) -> dict[GVK, AnyInformer]:
        """Every informer created so far, by kind."""
        return dict(self._informers)

    def index_field(self, gvk: GVK, name: str, fn: IndexFunc) -> None:
        """Add an index to ``gvk``'s informer, for ``list(gvk, index=(name, value))`` (controller-runtime's
        ``FieldIndexer.IndexField``)."""
        self.get_informer(gvk).add_index(name, fn)

    def _launch(self, gvk: GVK, inf: AnyInformer) -> None:
        assert self._stop is not None
        task = asyncio.create_task(inf.start(self._stop), name=f"informer {gvk}")
        self._tasks[gvk] = task
        task.add_done_callback(self._on_informer_done)

    def _on_informer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("informer stopped with an error", task=task.get_name(), error=str(task.exception()))

    # ---------------------------------------------------------------- runnable

    async def start(self, stop: asyncio.Event) -> None:
        """Start every informer (and any created later) and run until ``stop`` is set.

        Raises:
            RuntimeError: already started.
        """
        if self._started:
            raise RuntimeError("cache already started")
        self._stop = stop
        self._started = True
        for gvk, inf in builtins.list(self._informers.items()):
            self._launch(gvk, inf)
        try:
            await stop.wait()
        finally:
            tasks = builtins.list(self._tasks.values())
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def has_synced(self) -> bool:
        """True when every informer created so far has synced."""
        return all(i.has_synced() for i in self._informers.values())

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        """Wait until every informer created so far has synced; False if ``timeout`` seconds pass first."""
        infs = builtins.list(self._informers.values())
        if not infs:
            return True
        try:
            results = await asyncio.wait_for(asyncio.gather(*(i.wait_for_sync() for i in infs)), timeout)
        except TimeoutError:
            return False
        return all(results)

    async def _synced_informer(self, gvk: GVK) -> AnyInformer:
        if not self._started:
            raise CacheNotStartedError(
                f"cache not started: cannot read {gvk} from it; start the manager first or use its api_reader"
            )
        inf = self.get_informer(gvk)
        if not inf.has_synced():
            await inf.wait_for_sync()
        return inf

    # ---------------------------------------------------------------- reads

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]:
        """A deep copy of the cached object (waits for the kind's informer to sync on first use).

        Raises:
            NotFound: not in the cache (deleted, never existed, or outside the cache's scope).
            CacheNotStartedError: the cache is not running.
        """
        inf = await self._synced_informer(gvk)
        obj = inf.get_by_name(name, namespace)
        if obj is None:
            where = f"{namespace}/{name}" if namespace else name
            raise NotFound(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                    "message": f'{gvk.kind} "{where}" not found in cache',
                    "details": {"name": name, "group": gvk.group, "kind": gvk.kind},
                }
            )
        out: dict[str, Any] = deep_copy(obj)
        return out

    async def list(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, Any] | Selector | None = None,
        index: tuple[str, str] | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Deep copies of the cached objects, optionally filtered.

        Args:
            namespace: only this namespace (uses the namespace index).
            label_selector: a selector string (``"app=web,tier in (a,b)"``), a ``{key: value}`` dict of required
                labels, a ``metav1.LabelSelector`` dict (``matchLabels``/``matchExpressions``) or a Selector.
            index: ``(index_name, value)`` of an index added with :meth:`index_field`.

        Raises:
            KeyError: the index does not exist. ValueError: the selector is malformed.
            CacheNotStartedError: the cache is not running.
        """
        matcher = _label_matcher(label_selector)
        inf = await self._synced_informer(gvk)
        candidates: Iterable[dict[str, Any]]
        if index is not None:
            candidates = inf.by_index(index[0], index[1])
            if namespace:
                candidates = [o for o in candidates if (o.get("metadata") or {}).get("namespace") == namespace]
        elif namespace:
            candidates = inf.by_index(NAMESPACE_INDEX, namespace)
        else:
            candidates = inf.list()
        out: builtins.list[dict[str, Any]] = []
        for obj in candidates:
            if matcher is not None and not matcher.matches_object(obj):
                continue
            out.append(deep_copy(obj))
        return out
