"""Event handlers and the informer surface that controllers depend on.

Informers (``kreconcile.informer``) call an :class:`EventHandler` for every change they observe; a controller's
handler turns the change into workqueue keys: a :class:`RequestMapper` (:class:`EnqueueRequestForObject`,
:class:`EnqueueRequestForOwner`, :class:`EnqueueRequestsFromMapFunc`) says which keys an object stands for, and
:class:`QueueingEventHandler` applies the predicates and adds the keys to the queue, at low priority for
initial-list and resync events (controller-runtime ``pkg/handler``). Handlers run synchronously on the informer's
task and must only do cheap work (enqueue). The objects they receive are the cache's own: read them, never mutate them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from kreconcile.gvk import GVK
from kreconcile.reconcile import Request
from kreconcile.workqueue import PRIORITY_LOW, PRIORITY_NORMAL

if TYPE_CHECKING:
    from kreconcile.predicates import Predicate

_log = structlog.get_logger("kreconcile.handler")


class EventHandler(Protocol):
    """Receives add/update/delete notifications from an informer."""

    def on_add(self, obj: dict[str, Any], is_in_initial_list: bool) -> None:
        """An object appeared; ``is_in_initial_list`` is True for objects of the first list (and relists)."""
        ...

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """An object changed (or a resync delivered it again with ``old is new``-equal content)."""
        ...

    def on_delete(self, obj: dict[str, Any]) -> None:
        """An object was deleted. After a watch gap the object is the last state the cache knew
        (client-go's DeletedFinalStateUnknown); its metadata identifies it either way."""
        ...


class HandlerRegistration(Protocol):
    """Returned by :meth:`Informer.add_event_handler`."""

    def has_synced(self) -> bool:
        """True once this handler has been delivered every object of the informer's initial list."""
        ...


class Informer(Protocol):
    """The part of a shared informer a controller uses."""

    def add_event_handler(self, handler: EventHandler) -> HandlerRegistration:
        """Register ``handler``; it first receives ``on_add(obj, True)`` for every object already cached."""
        ...

    def has_synced(self) -> bool:
        """True once the first list has been stored in the cache."""
        ...


class RequestQueue(Protocol):
    """The part of :class:`kreconcile.workqueue.WorkQueue` an event handler uses."""

    def add(self, item: Request, *, priority: int = ...) -> None:
        """Enqueue ``item`` now at ``priority``."""
        ...


class RequestMapper(Protocol):
    """Says which reconcile requests an object's events stand for."""

    def requests_for(self, obj: dict[str, Any]) -> Iterable[Request]:
        """The keys to enqueue when ``obj`` is added, changed or deleted (may be empty)."""
        ...


class EnqueueRequestForObject:
    """Enqueue the object itself: ``Request(metadata.namespace, metadata.name)`` (``handler.EnqueueRequestForObject``,
    used by ``Builder.for_``)."""

    def requests_for(self, obj: dict[str, Any]) -> Iterable[Request]:
        """``[Request(namespace, name)]`` of ``obj`` (nothing if it has no name)."""
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            return ()
        return (Request(meta.get("namespace") or None, meta["name"]),)


class EnqueueRequestForOwner:
    """Enqueue the owner named in the object's ``metadata.ownerReferences`` (``handler.EnqueueRequestForOwner``,
    used by ``Builder.owns``).

    Args:
        owner_gvk: the owner's kind; a reference matches on group and kind (its version is ignored, as upstream).
        is_controller: only follow the reference with ``controller: true`` (default True, ``OnlyControllerOwner``);
            False follows every matching reference.
        owner_namespaced: the owner kind is namespaced (default True), so the request takes the object's
            namespace; set False for cluster-scoped owners (e.g. NodeClaim), giving ``namespace=None``.
    """

    def __init__(self, owner_gvk: GVK, is_controller: bool = True, owner_namespaced: bool = True) -> None:
        self.owner_gvk = owner_gvk
        self.is_controller = is_controller
        self.owner_namespaced = owner_namespaced

    def requests_for(self, obj: dict[str, Any]) -> Iterable[Request]:
        """One request per matching owner reference of ``obj``."""
        meta = obj.get("metadata") or {}
        namespace = (meta.get("namespace") or None) if self.owner_namespaced else None
        out: list[Request] = []
        for ref in meta.get("ownerReferences") or ():
            if self.is_controller and not ref.get("controller"):
                continue
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            if group != self.owner_gvk.group or ref.get("kind") != self.owner_gvk.kind or not ref.get("name"):
                continue
            out.append(Request(namespace, ref["name"]))
        return out


class EnqueueRequestsFromMapFunc:
    """Enqueue whatever ``fn(obj)`` returns (``handler.EnqueueRequestsFromMapFunc``, used by ``Builder.watches``).

    ``fn`` gets the object and returns an iterable of :class:`~kreconcile.reconcile.Request`; it runs on the
    informer's task, so it must be quick and must not do I/O (read other objects from the cache instead).
    """

    def __init__(self, fn: Callable[[dict[str, Any]], Iterable[Request]]) -> None:
        self.fn = fn

    def requests_for(self, obj: dict[str, Any]) -> Iterable[Request]:
        """Whatever ``fn(obj)`` returns."""
        return self.fn(obj)


def _resource_version(obj: dict[str, Any]) -> object:
    return (obj.get("metadata") or {}).get("resourceVersion")


class QueueingEventHandler:
    """An informer :class:`EventHandler` that filters events with ``predicates`` (all must pass) and adds the
    requests of ``mapper`` to ``queue``.

    Priorities: an add from the initial list and an update whose resourceVersion did not change (a resync) go in at
    :data:`PRIORITY_LOW`; every other event at :data:`PRIORITY_NORMAL`. An update enqueues the requests of both the
    old and the new object (an owner or a mapping may have changed). A mapper or predicate that raises is logged
    and the event dropped, so one bad function cannot stop the informer.
    """

    def __init__(self, mapper: RequestMapper, queue: RequestQueue, predicates: Sequence[Predicate] = ()) -> None:
        self.mapper = mapper
        self.queue = queue
        self.predicates = tuple(predicates)

    def _enqueue(self, objs: Sequence[dict[str, Any]], priority: int, event: str) -> None:
        try:
            seen: set[Request] = set()
            for obj in objs:
                for request in self.mapper.requests_for(obj):
                    if request not in seen:
                        seen.add(request)
                        self.queue.add(request, priority=priority)
        except Exception:
            _log.exception("event_handler_failed", event_type=event, mapper=type(self.mapper).__name__)

    def _passes(self, check: Callable[[Predicate], bool], event: str) -> bool:
        try:
            return all(check(p) for p in self.predicates)
        except Exception:
            _log.exception("predicate_failed", event_type=event)
            return False

    def on_add(self, obj: dict[str, Any], is_in_initial_list: bool) -> None:
        """Enqueue ``obj``'s requests if every predicate's ``create`` passes (low priority from the initial list)."""
        if self._passes(lambda p: p.create(obj), "create"):
            self._enqueue((obj,), PRIORITY_LOW if is_in_initial_list else PRIORITY_NORMAL, "create")

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Enqueue the requests of ``new`` and ``old`` if every ``update`` passes (low priority for a resync)."""
        if self._passes(lambda p: p.update(old, new), "update"):
            resync = _resource_version(old) is not None and _resource_version(old) == _resource_version(new)
            self._enqueue((new, old), PRIORITY_LOW if resync else PRIORITY_NORMAL, "update")

    def on_delete(self, obj: dict[str, Any]) -> None:
        """Enqueue ``obj``'s requests if every predicate's ``delete`` passes."""
        if self._passes(lambda p: p.delete(obj), "delete"):
            self._enqueue((obj,), PRIORITY_NORMAL, "delete")
