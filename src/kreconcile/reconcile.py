"""The reconcile contract: :class:`Request`, :class:`Result`, :class:`TerminalError` and :class:`Reconciler`.

A reconciler is level-based: it is told only *which* object to look at (a :class:`Request` names it by namespace
and name), never *what* changed, and drives the world toward the object's desired state. This is
controller-runtime's ``pkg/reconcile`` contract, in asyncio.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Request:
    """The key of one object to reconcile: hashable, so the workqueue can de-duplicate it.

    ``namespace`` is None for cluster-scoped objects (Nodes, NodeClaims, CRDs); ``name`` is ``metadata.name``.
    """

    namespace: str | None
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Request.name must be a non-empty string (metadata.name), got {self.name!r}")
        if self.namespace is not None and (not isinstance(self.namespace, str) or not self.namespace):
            raise ValueError(
                f"Request.namespace must be a non-empty string or None for cluster-scoped objects, "
                f"got {self.namespace!r}"
            )

    @classmethod
    def for_object(cls, obj: Mapping[str, Any]) -> Request:
        """The request naming ``obj`` (a wire-shape dict with ``metadata.name`` and optional ``metadata.namespace``).

        Raises:
            ValueError: ``metadata.name`` is missing.
        """
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise ValueError("object has no metadata.name; a Request needs one (set metadata.name)")
        return cls(meta.get("namespace") or None, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """What a successful reconcile asks for next.

    ``requeue_after``: seconds after which to reconcile the key again (> 0); it takes precedence over ``requeue``
    and resets the key's error backoff (controller-runtime: ``Forget`` then ``AddAfter``).
    ``requeue``: reconcile again after the key's rate-limited backoff (deprecated upstream in favour of
    ``requeue_after``; kept for parity). Both unset (the default) means done until the next event.
    """

    requeue: bool = False
    requeue_after: float | None = None

    def __post_init__(self) -> None:
        if self.requeue_after is not None and (
            not isinstance(self.requeue_after, int | float) or math.isnan(self.requeue_after) or self.requeue_after < 0
        ):
            raise ValueError(
                f"Result.requeue_after must be a number of seconds >= 0 (or None), got {self.requeue_after!r}"
            )


class TerminalError(Exception):
    """Raise from a reconcile to report an error that retrying cannot fix (e.g. an invalid spec).

    The key is not requeued; it is reconciled again only when a new event arrives for it. Counted in
    ``controller_runtime_terminal_reconcile_errors_total`` as well as ``controller_runtime_reconcile_errors_total``
    (controller-runtime's ``reconcile.TerminalError``). Wrap a cause with ``raise TerminalError("...") from exc``.
    """


@runtime_checkable
class Reconciler(Protocol):
    """Anything with an async ``reconcile(request) -> Result`` method."""

    async def reconcile(self, request: Request) -> Result:
        """Drive the object named by ``request`` toward its desired state.

        Called with at most one in-flight call per key. Must be idempotent: it may run again for the same
        state. Return ``Result(requeue_after=s)`` to be called again after ``s`` seconds; raise to be retried
        with per-key exponential backoff (5 ms doubling to 1,000 s); raise ``TerminalError`` to stop retrying
        until the object changes. The object may already be gone: a request for a deleted object is normal and
        should be answered by cleaning up (or ignoring NotFound).
        """
        ...


ReconcileFunc = Callable[[Request], Awaitable[Result | None]]
"""A plain ``async def reconcile(request) -> Result | None`` function; returning None means ``Result()``."""


class FuncReconciler:
    """Adapts a :data:`ReconcileFunc` (a plain async function) to :class:`Reconciler`."""

    def __init__(self, fn: ReconcileFunc) -> None:
        self._fn = fn

    async def reconcile(self, request: Request) -> Result:
        """Call the function; None becomes ``Result()``.

        Raises:
            TypeError: the function returned something other than a :class:`Result` or None.
        """
        result = await self._fn(request)
        if result is None:
            return Result()
        if not isinstance(result, Result):
            raise TypeError(f"reconcile function must return kreconcile.Result or None, got {type(result).__name__}")
        return result


def as_reconciler(reconciler: Reconciler | ReconcileFunc) -> Reconciler:
    """Return ``reconciler`` itself if it has a ``reconcile`` method, else wrap the async function.

    Raises:
        TypeError: it is neither a Reconciler nor a callable, or its ``reconcile`` (or the function) is not async.
    """
    method = getattr(reconciler, "reconcile", None)
    if method is not None:
        if (inspect.isfunction(method) or inspect.ismethod(method)) and not inspect.iscoroutinefunction(method):
            raise TypeError(
                f"{type(reconciler).__name__}.reconcile must be 'async def reconcile(self, request) -> Result'"
            )
        return reconciler  # type: ignore[return-value]
    if callable(reconciler):
        if (inspect.isfunction(reconciler) or inspect.ismethod(reconciler)) and not inspect.iscoroutinefunction(
            reconciler
        ):
            raise TypeError(f"reconcile function {reconciler.__name__!r} must be 'async def' (it returns a Result)")
        return FuncReconciler(reconciler)
    raise TypeError(
        f"reconciler must have an async reconcile(request) method or be an async function, got {reconciler!r}"
    )
