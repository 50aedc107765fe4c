"""Event filters applied before an event becomes a workqueue key (controller-runtime ``pkg/predicate``).

A :class:`Predicate` answers, per event kind, whether the event should enqueue anything. Predicates given to
``Builder.for_/owns/watches`` apply to that watch; ``with_event_filter`` applies to every watch of the controller.
Objects are wire-shape dicts owned by the cache: read them, never mutate them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kreconcile.labels import Selector, as_selector

Obj = dict[str, Any]


class Predicate(Protocol):
    """Decides per event whether it is worth reconciling."""

    def create(self, obj: Obj) -> bool:
        """An object appeared (including the initial list)."""
        ...

    def update(self, old: Obj, new: Obj) -> bool:
        """An object changed (or was resynced: same resourceVersion)."""
        ...

    def delete(self, obj: Obj) -> bool:
        """An object was deleted."""
        ...

    def generic(self, obj: Obj) -> bool:
        """Any other event (from a non-informer source)."""
        ...


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


class Funcs:
    """A predicate from optional functions; an event kind without a function passes (``predicate.Funcs``)."""

    def __init__(
        self,
        create: Callable[[Obj], bool] | None = None,
        update: Callable[[Obj, Obj], bool] | None = None,
        delete: Callable[[Obj], bool] | None = None,
        generic: Callable[[Obj], bool] | None = None,
    ) -> None:
        self._create, self._update, self._delete, self._generic = create, update, delete, generic

    def create(self, obj: Obj) -> bool:
        """The ``create`` function's answer, or True."""
        return self._create(obj) if self._create else True

    def update(self, old: Obj, new: Obj) -> bool:
        """The ``update`` function's answer, or True."""
        return self._update(old, new) if self._update else True

    def delete(self, obj: Obj) -> bool:
        """The ``delete`` function's answer, or True."""
        return self._delete(obj) if self._delete else True

    def generic(self, obj: Obj) -> bool:
        """The ``generic`` function's answer, or True."""
        return self._generic(obj) if self._generic else True


def new_predicate_funcs(keep: Callable[[Obj], bool]) -> Predicate:
    """A predicate applying ``keep(obj)`` to every event (for updates, to the new object), like controller-runtime's
    ``predicate.NewPredicateFuncs``. Example: ``new_predicate_funcs(lambda o: o["metadata"].get("namespace") ==
    "kaito")``."""
    return Funcs(create=keep, update=lambda old, new: keep(new), delete=keep, generic=keep)


class _UpdateOnly:
    """Base for predicates that only filter updates."""

    def create(self, obj: Obj) -> bool:
        """Creates pass."""
        return True

    def delete(self, obj: Obj) -> bool:
        """Deletes pass."""
        return True

    def generic(self, obj: Obj) -> bool:
        """Generic events pass."""
        return True


class GenerationChanged(_UpdateOnly):
    """Pass updates only when ``metadata.generation`` changed, so status-only writes (and metadata-only writes,
    and resyncs) do not trigger a reconcile. Objects without a generation (ConfigMaps, most built-ins without a
    spec) never pass updates; combine with :class:`LabelChanged` or :class:`AnnotationChanged` with :func:`or_` if
    needed (``predicate.GenerationChangedPredicate``)."""

    def update(self, old: Obj, new: Obj) -> bool:
        """True if the field this predicate watches differs between ``old`` and ``new``."""
        return _meta(old).get("generation") != _meta(new).get("generation")


class ResourceVersionChanged(_UpdateOnly):
    """Pass updates only when ``metadata.resourceVersion`` changed: drops periodic resynces
    (``predicate.ResourceVersionChangedPredicate``)."""

    def update(self, old: Obj, new: Obj) -> bool:
        """True if the field this predicate watches differs between ``old`` and ``new``."""
        return _meta(old).get("resourceVersion") != _meta(new).get("resourceVersion")


class LabelChanged(_UpdateOnly):
    """Pass updates only when ``metadata.labels`` changed (``predicate.LabelChangedPredicate``)."""

    def update(self, old: Obj, new: Obj) -> bool:
        """True if the field this predicate watches differs between ``old`` and ``new``."""
        return (_meta(old).get("labels") or {}) != (_meta(new).get("labels") or {})


class AnnotationChanged(_UpdateOnly):
    """Pass updates only when ``metadata.annotations`` changed (``predicate.AnnotationChangedPredicate``)."""

    def update(self, old: Obj, new: Obj) -> bool:
        """True if the field this predicate watches differs between ``old`` and ``new``."""
        return (_meta(old).get("annotations") or {}) != (_meta(new).get("annotations") or {})


class LabelSelector:
    """Pass events whose object's labels match ``selector`` (for updates: the new object).

    ``selector`` is a ``metav1.LabelSelector`` dict (``{"matchLabels": {...}, "matchExpressions": [...]}``), a
    selector string (``"app=web,tier!=db"``) or a :class:`~kreconcile.labels.Selector`.

    Raises:
        ValueError: the selector is malformed (the message names the clause).
    """

    def __init__(self, selector: Selector | Mapping[str, Any] | str) -> None:
        self.selector = as_selector(selector)

    def create(self, obj: Obj) -> bool:
        """True if ``obj``'s labels match."""
        return self.selector.matches_object(obj)

    def update(self, old: Obj, new: Obj) -> bool:
        """True if the new object's labels match."""
        return self.selector.matches_object(new)

    def delete(self, obj: Obj) -> bool:
        """True if ``obj``'s labels match."""
        return self.selector.matches_object(obj)

    def generic(self, obj: Obj) -> bool:
        """True if ``obj``'s labels match."""
        return self.selector.matches_object(obj)


class _And:
    def __init__(self, preds: tuple[Predicate, ...]) -> None:
        self.preds = preds

    def create(self, obj: Obj) -> bool:
        return all(p.create(obj) for p in self.preds)

    def update(self, old: Obj, new: Obj) -> bool:
        return all(p.update(old, new) for p in self.preds)

    def delete(self, obj: Obj) -> bool:
        return all(p.delete(obj) for p in self.preds)

    def generic(self, obj: Obj) -> bool:
        return all(p.generic(obj) for p in self.preds)


class _Or:
    def __init__(self, preds: tuple[Predicate, ...]) -> None:
        self.preds = preds

    def create(self, obj: Obj) -> bool:
        return any(p.create(obj) for p in self.preds)

    def update(self, old: Obj, new: Obj) -> bool:
        return any(p.update(old, new) for p in self.preds)

    def delete(self, obj: Obj) -> bool:
        return any(p.delete(obj) for p in self.preds)

    def generic(self, obj: Obj) -> bool:
        return any(p.generic(obj) for p in self.preds)


class _Not:
    def __init__(self, pred: Predicate) -> None:
        self.pred = pred

    def create(self, obj: Obj) -> bool:
        return not self.pred.create(obj)

    def update(self, old: Obj, new: Obj) -> bool:
        return not self.pred.update(old, new)

    def delete(self, obj: Obj) -> bool:
        return not self.pred.delete(obj)

    def generic(self, obj: Obj) -> bool:
        return not self.pred.generic(obj)


def and_(*predicates: Predicate) -> Predicate:
    """Pass an event only if every predicate passes it (none given: pass everything)."""
    return _And(predicates)


def or_(*predicates: Predicate) -> Predicate:
    """Pass an event if any predicate passes it (none given: pass nothing)."""
    return _Or(predicates)


def not_(predicate: Predicate) -> Predicate:
    """Invert ``predicate`` for every event kind."""
    return _Not(predicate)
