"""Fluent construction of a controller and its watches (controller-runtime ``pkg/builder``).

.. code-block:: python

    Builder(manager).for_(WORKSPACE).owns(STATEFULSET).owns(SERVICE) \\
        .watches(NODECLAIM, lambda nc: [Request(...)]) \\
        .with_event_filter(GenerationChanged()).with_options(max_concurrent_reconciles=4) \\
        .complete(WorkspaceReconciler(client))

``for_(kind)`` enqueues the object itself; ``owns(kind)`` enqueues the controller owner (of the ``for_`` kind) of
objects of that kind; ``watches(kind, mapper)`` enqueues what the mapper returns. ``complete`` creates the
:class:`~kreconcile.controller.Controller`, wires each watch to the manager's shared informer for the kind and adds
the controller to the manager, which starts it (after leader election, by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from kreconcile.clock import Clock
from kreconcile.controller import Controller
from kreconcile.gvk import GVK
from kreconcile.handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
    Informer,
    RequestMapper,
)
from kreconcile.predicates import Predicate
from kreconcile.ratelimiter import RateLimiter
from kreconcile.reconcile import ReconcileFunc, Reconciler, Request
from kreconcile.runnable import Runnable


class InformerSource(Protocol):
    """What the builder needs from the manager's cache."""

    def get_informer(self, gvk: GVK) -> Informer:
        """The shared informer for ``gvk`` (created on first use, started with the cache)."""
        ...


class ManagerLike(Protocol):
    """What the builder needs from a manager (:class:`kreconcile.manager.Manager` satisfies it)."""

    @property
    def cache(self) -> InformerSource:
        """The manager's informer cache."""
        ...

    def add(self, runnable: Runnable) -> Any:
        """Register ``runnable`` to be started with the manager."""
        ...


_OPTIONS = {
    "max_concurrent_reconciles",
    "rate_limiter",
    "cache_sync_timeout",
    "recover_panic",
    "needs_leader_election",
    "clock",
    "skip_name_validation",
    "reconcile_timeout",
}


class Builder:
    """Builds one controller; every method but :meth:`complete` returns the builder.

    Raises (from the methods, at configuration time):
        ValueError: ``for_`` called twice, an unknown option, an invalid name, or ``complete`` without ``for_``
            or ``named``, or without any watch; a duplicate controller name.
    """

    def __init__(self, manager: ManagerLike) -> None:
        self._manager = manager
        self._name: str | None = None
        self._for: GVK | None = None
        self._for_namespaced = True
        self._watches: list[tuple[GVK, RequestMapper, tuple[Predicate, ...]]] = []
        self._global_predicates: list[Predicate] = []
        self._options: dict[str, Any] = {}

    def named(self, name: str) -> Builder:
        """Set the controller's name (default: the ``for_`` kind in lower case). Must be unique in the process."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("Builder.named: the controller name must be a non-empty string")
        self._name = name
        return self

    def for_(self, gvk: GVK, *, predicates: Sequence[Predicate] = (), namespaced: bool = True) -> Builder:
        """Reconcile objects of ``gvk``: each event enqueues the object itself.

        ``namespaced`` says whether the kind is namespaced (default True); ``owns`` needs it to build the owner's
        request. ``predicates`` filter this watch only.
        """
        if self._for is not None:
            raise ValueError(f"Builder.for_ was already called with {self._for}; a controller reconciles one kind")
        self._for = gvk
        self._for_namespaced = namespaced
        self._watches.insert(0, (gvk, EnqueueRequestForObject(), tuple(predicates)))
        return self

    def owns(self, gvk: GVK, *, predicates: Sequence[Predicate] = (), only_controller: bool = True) -> Builder:
        """Watch objects of ``gvk`` and enqueue their controller owner of the ``for_`` kind (all matching owners
        when ``only_controller`` is False). Call after :meth:`for_`.

        Raises:
            ValueError: :meth:`for_` was not called first.
        """
        if self._for is None:
            raise ValueError("Builder.owns needs the owner kind: call for_(kind) before owns(...)")
        mapper = EnqueueRequestForOwner(self._for, is_controller=only_controller, owner_namespaced=self._for_namespaced)
        self._watches.append((gvk, mapper, tuple(predicates)))
        return self

    def watches(
        self,
        gvk: GVK,
        handler: RequestMapper | Callable[[dict[str, Any]], Iterable[Request]],
        *,
        predicates: Sequence[Predicate] = (),
    ) -> Builder:
        """Watch objects of ``gvk`` and enqueue what ``handler`` gives: a :class:`~kreconcile.handler.RequestMapper`
        or a map function ``obj -> Iterable[Request]`` (quick and I/O-free: it runs on the informer's task).

        Raises:
            TypeError: ``handler`` is neither.
        """
        if hasattr(handler, "requests_for"):
            mapper: RequestMapper = handler
        elif callable(handler):
            mapper = EnqueueRequestsFromMapFunc(handler)
        else:
            raise TypeError(f"Builder.watches: handler must be a RequestMapper or a map function, got {handler!r}")
        self._watches.append((gvk, mapper, tuple(predicates)))
        return self

    def with_event_filter(self, predicate: Predicate) -> Builder:
        """Apply ``predicate`` to the events of every watch of this controller."""
        self._global_predicates.append(predicate)
        return self

    def with_options(
        self,
        *,
        max_concurrent_reconciles: int | None = None,
        rate_limiter: RateLimiter | None = None,
        cache_sync_timeout: float | None = None,
        recover_panic: bool | None = None,
        needs_leader_election: bool | None = None,
        clock: Clock | None = None,
        skip_name_validation: bool | None = None,
        reconcile_timeout: float | None = None,
    ) -> Builder:
        """Controller options (see :class:`~kreconcile.controller.Controller` for each default); None keeps it."""
        given = {
            "max_concurrent_reconciles": max_concurrent_reconciles,
            "rate_limiter": rate_limiter,
            "cache_sync_timeout": cache_sync_timeout,
            "recover_panic": recover_panic,
            "needs_leader_election": needs_leader_election,
            "clock": clock,
            "skip_name_validation": skip_name_validation,
            "reconcile_timeout": reconcile_timeout,
        }
        self._options.update({k: v for k, v in given.items() if v is not None and k in _OPTIONS})
        return self

    def complete(self, reconciler: Reconciler | ReconcileFunc) -> Controller:
        """Create the controller, wire its watches to the manager's informers and add it to the manager.

        Raises:
            ValueError: neither ``for_`` nor ``named`` was called, there is no watch, or the name is taken.
        """
        name = self._name or (self._for.kind.lower() if self._for is not None else None)
        if not name:
            raise ValueError("Builder.complete: call for_(kind) or named(name) first; a controller needs a name")
        if not self._watches:
            raise ValueError(f"Builder.complete: controller {name!r} watches nothing; call for_, owns or watches")
        controller = Controller(name, reconciler, **self._options)
        for gvk, mapper, predicates in self._watches:
            informer = self._manager.cache.get_informer(gvk)
            controller.watch(informer, mapper, (*self._global_predicates, *predicates))
        self._manager.add(controller)
        return controller

    build = complete
