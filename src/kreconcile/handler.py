"""Event handlers and the informer surface that controllers depend on.

Informers (``kreconcile.informer``) call an :class:`EventHandler` for every change they observe; a controller's
handler turns the change into workqueue keys. Handlers run synchronously on the informer's task and must only do
cheap work (enqueue). The objects they receive are the cache's own: read them, never mutate them.
"""

from __future__ import annotations

from typing import Any, Protocol


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
