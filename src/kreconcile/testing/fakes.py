"""In-memory fakes for unit-testing controllers without an API server.

:class:`FakeInformer` implements :class:`kreconcile.handler.Informer`: the test creates, updates and deletes
objects on it and it delivers the same notifications a real shared informer would (initial list with
``is_in_initial_list=True``, updates with the old and new object, deletes with the last known state, resyncs with
an unchanged resourceVersion). It bumps ``metadata.resourceVersion`` on every write and ``metadata.generation`` when
anything outside ``metadata`` and ``status`` changes, as the API server does for resources with a status
subresource, so predicates such as ``GenerationChanged`` behave as they would against a server.

Handlers are called synchronously from the mutating call, so a test can assert on the queue right after it.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from kreconcile.gvk import GVK
from kreconcile.handler import EventHandler, HandlerRegistration
from kreconcile.reconcile import Request, Result

Obj = dict[str, Any]


class FakeRegistration:
    """A handler registration; synced once its initial list was delivered and the informer is synced."""

    def __init__(self, informer: FakeInformer, handler: EventHandler) -> None:
        self.informer = informer
        self.handler = handler
        self.initial_delivered = False

    def has_synced(self) -> bool:
        """True once the initial list was delivered and the informer is synced."""
        return self.initial_delivered and self.informer.has_synced()


class FakeInformer:
    """An in-memory informer for one kind.

    Args:
        objects: objects present before any handler registers (delivered as the initial list).
        synced: whether the initial list is complete. With ``synced=False``, objects created before
            :meth:`mark_synced` are delivered with ``is_in_initial_list=True`` and no registration reports synced
            until :meth:`mark_synced` (use this to test that controllers wait for sync).
    """

    def __init__(self, objects: list[Obj] | None = None, *, synced: bool = True) -> None:
        self._objects: dict[tuple[str | None, str], Obj] = {}
        self._rv = itertools.count(1)
        self._synced = synced
        self.registrations: list[FakeRegistration] = []
        for obj in objects or []:
            self._store(self._new(obj))

    # ---- Informer protocol --------------------------------------------------------------------------------------

    def add_event_handler(self, handler: EventHandler) -> HandlerRegistration:
        """Register ``handler`` and deliver every current object to it as part of the initial list."""
        reg = FakeRegistration(self, handler)
        self.registrations.append(reg)
        for obj in list(self._objects.values()):
            handler.on_add(obj, True)
        reg.initial_delivered = True
        return reg

    def remove_event_handler(self, registration: HandlerRegistration) -> None:
        """Stop notifying the handler of ``registration`` (no-op if it is not registered)."""
        self.registrations = [r for r in self.registrations if r is not registration]

    def has_synced(self) -> bool:
        """True once the initial list is complete (see ``synced`` and :meth:`mark_synced`)."""
        return self._synced

    # ---- test controls ------------------------------------------------------------------------------------------

    def mark_synced(self) -> None:
        """Declare the initial list complete: registrations report synced from now on."""
        self._synced = True

    def create(self, obj: Obj) -> Obj:
        """Store a new object (resourceVersion and generation 1 assigned) and notify ``on_add``.

        Raises:
            ValueError: the object has no ``metadata.name`` or already exists.
        """
        key = self._key(obj)
        if key in self._objects:
            raise ValueError(f"FakeInformer.create: {key[0]}/{key[1]} already exists; use update()")
        stored = self._new(obj)
        self._store(stored)
        for reg in list(self.registrations):
            reg.handler.on_add(stored, not self._synced)
        return copy.deepcopy(stored)

    def update(self, obj: Obj) -> Obj:
        """Replace an object (bumping resourceVersion, and generation if spec-like fields changed) and notify
        ``on_update(old, new)``.

        Raises:
            KeyError: the object does not exist.
        """
        key = self._key(obj)
        old = self._objects[key]
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._rv))
        generation = old["metadata"].get("generation", 1)
        if _spec_like(old) != _spec_like(new):
            generation += 1
        meta["generation"] = generation
        meta.setdefault("uid", old["metadata"].get("uid"))
        self._store(new)
        for reg in list(self.registrations):
            reg.handler.on_update(old, new)
        return copy.deepcopy(new)

    def delete(self, namespace: str | None, name: str) -> Obj:
        """Remove an object and notify ``on_delete`` with its last state.

        Raises:
            KeyError: the object does not exist.
        """
        obj = self._objects.pop((namespace or None, name))
        for reg in list(self.registrations):
            reg.handler.on_delete(obj)
        return copy.deepcopy(obj)

    def resync(self) -> None:
        """Deliver every object again as ``on_update(obj, obj)`` with an unchanged resourceVersion."""
        for obj in list(self._objects.values()):
            for reg in list(self.registrations):
                reg.handler.on_update(obj, obj)

    def get(self, namespace: str | None, name: str) -> Obj:
        """A copy of the stored object.

        Raises:
            KeyError: it does not exist.
        """
        return copy.deepcopy(self._objects[(namespace or None, name)])

    def list(self) -> list[Obj]:
        """Copies of every stored object."""
        return [copy.deepcopy(o) for o in self._objects.values()]

    def __iter__(self) -> Iterator[Obj]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._objects)

    # ---- internals ----------------------------------------------------------------------------------------------

    @staticmethod
    def _key(obj: Obj) -> tuple[str | None, str]:
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            raise ValueError("FakeInformer: object needs metadata.name")
        return (meta.get("namespace") or None, meta["name"])

    def _new(self, obj: Obj) -> Obj:
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        self._key(new)
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("generation", 1)
        meta.setdefault("uid", f"uid-{meta.get('namespace') or ''}-{meta['name']}")
        return new

    def _store(self, obj: Obj) -> None:
        self._objects[self._key(obj)] = obj


def _spec_like(obj: Obj) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class FakeCache:
    """A cache of :class:`FakeInformer` per kind, created on first use (what ``Builder`` needs from a manager)."""

    def __init__(self, *, synced: bool = True) -> None:
        self.synced = synced
        self.informers: dict[GVK, FakeInformer] = {}

    def get_informer(self, gvk: GVK) -> FakeInformer:
        """The informer for ``gvk`` (a new, empty one on first call)."""
        if gvk not in self.informers:
            self.informers[gvk] = FakeInformer(synced=self.synced)
        return self.informers[gvk]


class FakeManager:
    """The manager surface ``Builder`` uses: a :class:`FakeCache` and a list of added runnables."""

    def __init__(self, cache: FakeCache | None = None) -> None:
        self.cache = cache or FakeCache()
        self.runnables: list[Any] = []

    def add(self, runnable: Any) -> None:
        """Record ``runnable`` (the test starts it)."""
        self.runnables.append(runnable)


class RecordingReconciler:
    """A reconciler for tests that records every call and tracks concurrency.

    ``behaviour(request, attempt)`` (optional, async) decides each call's outcome: return a Result (or None), or
    raise. ``attempt`` counts this key's calls from 1. Attributes: ``calls`` (requests in call order),
    ``max_in_flight_per_key`` and ``max_in_flight`` (the most simultaneous calls for one key / overall).
    """

    def __init__(self, behaviour: Callable[[Request, int], Awaitable[Result | None]] | None = None) -> None:
        self.behaviour = behaviour
        self.calls: list[Request] = []
        self.in_flight: dict[Request, int] = {}
        self.max_in_flight_per_key = 0
        self.max_in_flight = 0

    def count(self, request: Request) -> int:
        """How many times ``request`` has been reconciled (started)."""
        return sum(1 for r in self.calls if r == request)

    async def reconcile(self, request: Request) -> Result:
        """Record the call, then run ``behaviour`` (if any)."""
        self.calls.append(request)
        attempt = self.count(request)
        self.in_flight[request] = self.in_flight.get(request, 0) + 1
        self.max_in_flight_per_key = max(self.max_in_flight_per_key, self.in_flight[request])
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        try:
            result = await self.behaviour(request, attempt) if self.behaviour else None
            return result if result is not None else Result()
        finally:
            self.in_flight[request] -= 1
            if not self.in_flight[request]:
                del self.in_flight[request]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0, message: str = "") -> None:
    """Yield to the event loop until ``condition()`` is true; fail after ``timeout`` wall seconds.

    For tests: waits on observable state instead of sleeping for a fixed time.

    Raises:
        AssertionError: the condition did not become true in time (with ``message``).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        await asyncio.sleep(0.0005)
