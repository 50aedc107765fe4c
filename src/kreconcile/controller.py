"""The controller: watches informers, queues requests, and runs a reconciler on them with bounded concurrency
(controller-runtime ``pkg/internal/controller``).

Life cycle (:meth:`Controller.start`): register the event handlers of every watch; wait until every informer and
every handler registration has synced (no reconcile ever sees a half-filled cache), failing with
:class:`CacheSyncTimeoutError` after ``cache_sync_timeout``; then run ``max_concurrent_reconciles`` workers until
``stop`` is set. On stop the queue is shut down — queued keys are dropped (they are recomputed from the cache on
the next start, so nothing is lost in a level-based system) — in-flight reconciles run to completion, and ``start``
returns. If the manager cancels ``start`` (its graceful-shutdown timeout passed) the workers are cancelled and
awaited, so no task outlives the controller.

Result accounting is controller-runtime's ``reconcileHandler``:

============================  ===================================================  ===========================
outcome                        queue                                                ``reconcile_total{result}``
============================  ===================================================  ===========================
raised :class:`TerminalError`  not requeued (backoff count kept)                    ``error`` (+ terminal count)
raised anything else           ``add_rate_limited`` (the Result is never seen)       ``error``
``Result(requeue_after=s)``    ``forget`` then ``add_after(s)``                     ``requeue_after``
``Result(requeue=True)``       ``add_rate_limited``                                 ``requeue``
``Result()``                   ``forget`` (backoff reset)                           ``success``
============================  ===================================================  ===========================

Exceptions that signal a bug in the reconciler rather than a failed operation (``TypeError``, ``KeyError``,
``AttributeError``, ... — :data:`DEFAULT_PANIC_TYPES`, Python's analogue of a Go panic) are additionally counted in
``controller_runtime_reconcile_panics_total`` when ``recover_panic`` is on; with it off they propagate and
``start`` fails.
"""

from __future__ import annotations

import asyncio
import math
import uuid
import weakref
from collections.abc import Sequence
from typing import Any

import structlog

from kreconcile import metrics
from kreconcile.clock import Clock, RealClock
from kreconcile.handler import (
    EnqueueRequestForObject,
    HandlerRegistration,
    Informer,
    QueueingEventHandler,
    RequestMapper,
)
from kreconcile.predicates import Predicate
from kreconcile.ratelimiter import RateLimiter, default_controller_rate_limiter
from kreconcile.reconcile import ReconcileFunc, Reconciler, Request, Result, TerminalError, as_reconciler
from kreconcile.workqueue import ShutDown, WorkQueue

_log = structlog.get_logger("kreconcile.controller")

DEFAULT_PANIC_TYPES: tuple[type[BaseException], ...] = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    KeyError,
    IndexError,
    NameError,
    TypeError,
    RecursionError,
    NotImplementedError,
)
"""Exception types treated as panics (programming errors) rather than ordinary reconcile errors."""

_SYNC_POLL_SECONDS = 0.1
"""How often ``start`` re-checks ``has_synced`` (controller-runtime's WaitForCacheSync polls every 100 ms)."""

_names_in_use: dict[str, object] = {}
"""Names of live controllers, each with the token of the controller holding it."""


def _release_name(name: str, token: object) -> None:
    if _names_in_use.get(name) is token:
        del _names_in_use[name]


class CacheSyncTimeoutError(TimeoutError):
    """``Controller.start`` gave up waiting for its informers and handlers to sync."""


class ReconcileTimeoutError(TimeoutError):
    """A reconcile ran longer than the controller's ``reconcile_timeout`` and was cancelled; it is retried with
    backoff like any other error."""


class _Watch:
    __slots__ = ("handler", "informer", "predicates", "registration")

    def __init__(self, informer: Informer, handler: RequestMapper, predicates: tuple[Predicate, ...]) -> None:
        self.informer = informer
        self.handler = handler
        self.predicates = predicates
        self.registration: HandlerRegistration | None = None


class Controller:
    """Runs ``reconciler`` for the requests produced by its watches.

    Args:
        name: unique among the process's live controllers (it labels the metrics and the logs); the name is
            released when ``start`` returns or the controller is garbage-collected. Required.
        reconciler: an object with ``async reconcile(request) -> Result`` or a plain async function.
        max_concurrent_reconciles: number of workers (default 1, controller-runtime's default); a key is never
            reconciled by two workers at once regardless.
        rate_limiter: backoff for errors and ``Result(requeue=True)`` (default
            :func:`~kreconcile.ratelimiter.default_controller_rate_limiter`: 5 ms → 1,000 s per key, 10 qps/100 burst).
        cache_sync_timeout: seconds ``start`` waits for every watch to sync before failing (default 120, as
            controller-runtime's ``CacheSyncTimeout``).
        recover_panic: contain and count exceptions of ``panic_types`` (default True, as upstream); False lets them
            fail ``start``.
        needs_leader_election: run only on the elected leader (default True).
        clock: time source (default :class:`~kreconcile.clock.RealClock`).
        skip_name_validation: allow a name already used by another controller (tests; metrics then merge).
        panic_types: exception types counted as panics (default :data:`DEFAULT_PANIC_TYPES`).
        reconcile_timeout: seconds (of ``clock``) after which a reconcile is cancelled and counted as an error
            (:class:`ReconcileTimeoutError`, retried with backoff); None (default) never times out, as
            controller-runtime's ``ReconciliationTimeout`` default.

    Raises:
        ValueError: empty or duplicate name, ``max_concurrent_reconciles`` < 1, ``cache_sync_timeout`` <= 0.
    """

    def __init__(
        self,
        name: str,
        reconciler: Reconciler | ReconcileFunc,
        *,
        max_concurrent_reconciles: int = 1,
        rate_limiter: RateLimiter | None = None,
        cache_sync_timeout: float = 120.0,
        recover_panic: bool = True,
        needs_leader_election: bool = True,
        clock: Clock | None = None,
        skip_name_validation: bool = False,
        panic_types: tuple[type[BaseException], ...] = DEFAULT_PANIC_TYPES,
        reconcile_timeout: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("Controller name must be a non-empty string (it labels metrics and logs)")
        if not isinstance(max_concurrent_reconciles, int) or max_concurrent_reconciles < 1:
            raise ValueError(f"max_concurrent_reconciles must be an integer >= 1, got {max_concurrent_reconciles!r}")
        if not (isinstance(cache_sync_timeout, int | float) and cache_sync_timeout > 0):
            raise ValueError(f"cache_sync_timeout must be > 0 seconds, got {cache_sync_timeout!r}")
        if reconcile_timeout is not None and not (isinstance(reconcile_timeout, int | float) and reconcile_timeout > 0):
            raise ValueError(f"reconcile_timeout must be > 0 seconds or None, got {reconcile_timeout!r}")
        self.reconciler = as_reconciler(reconciler)
        self._name_token: object | None = None
        if not skip_name_validation:
            if name in _names_in_use:
                raise ValueError(
                    f"controller name {name!r} is already used by another controller; names must be unique because "
                    f"they label metrics (choose another with Builder.named(...))"
                )
            self._name_token = token = object()
            _names_in_use[name] = token
            weakref.finalize(self, _release_name, name, token)
        self.name = name
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self.cache_sync_timeout = float(cache_sync_timeout)
        self.recover_panic = recover_panic
        self.reconcile_timeout = reconcile_timeout
        self._needs_leader_election = needs_leader_election
        self._clock: Clock = clock or RealClock()
        self._panic_types = panic_types
        self.queue: WorkQueue[Request] = WorkQueue(
            name, controller=name, rate_limiter=rate_limiter or default_controller_rate_limiter(self._clock),
            clock=self._clock,
        )
        self._watches: list[_Watch] = []
        self._started = False
        self._log = _log.bind(controller=name)
        metrics.init_controller_metrics(name, max_concurrent_reconciles)
        self._m_total = {
            r: metrics.reconcile_total.labels(controller=name, result=r) for r in metrics.RECONCILE_RESULTS
        }
        self._m_errors = metrics.reconcile_errors_total.labels(controller=name)
        self._m_terminal = metrics.terminal_reconcile_errors_total.labels(controller=name)
        self._m_panics = metrics.reconcile_panics_total.labels(controller=name)
        self._m_time = metrics.reconcile_time_seconds.labels(controller=name)
        self._m_active = metrics.active_workers.labels(controller=name)

    # ---- configuration ------------------------------------------------------------------------------------------

    def watch(
        self,
        informer: Informer,
        handler: RequestMapper | None = None,
        predicates: Sequence[Predicate] = (),
    ) -> None:
        """Turn ``informer``'s events into requests with ``handler`` (default: the object itself), keeping only
        events every predicate passes. Before ``start`` the handler is registered at start; after, at once."""
        w = _Watch(informer, handler or EnqueueRequestForObject(), tuple(predicates))
        self._watches.append(w)
        if self._started:
            self._register(w)

    def needs_leader_election(self) -> bool:
        """Whether the manager must win the Lease before starting this controller."""
        return self._needs_leader_election

    @property
    def started(self) -> bool:
        """True once :meth:`start` was called."""
        return self._started

    def _register(self, w: _Watch) -> None:
        w.registration = w.informer.add_event_handler(QueueingEventHandler(w.handler, self.queue, w.predicates))

    def _unregister(self) -> None:
        """Detach our handlers from informers that support it (shared informers outlive controllers)."""
        for w in self._watches:
            remove = getattr(w.informer, "remove_event_handler", None)
            if w.registration is not None and callable(remove):
                remove(w.registration)
                w.registration = None

    def _synced(self) -> bool:
        return all(
            w.informer.has_synced() and w.registration is not None and w.registration.has_synced()
            for w in self._watches
        )

    # ---- running ------------------------------------------------------------------------------------------------

    async def start(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (see the module docstring for the life cycle).

        Raises:
            RuntimeError: the controller was already started, or has no watches.
            CacheSyncTimeoutError: the watches did not sync within ``cache_sync_timeout`` seconds.
            BaseException: a panic-type exception from the reconciler when ``recover_panic`` is False.
        """
        if self._started:
            raise RuntimeError(f"controller {self.name!r} was already started; a Controller runs once")
        if not self._watches:
            raise RuntimeError(f"controller {self.name!r} has no watches; call watch() (or Builder.for_) first")
        self._started = True
        try:
            await self._run(stop)
        finally:
            if self._name_token is not None:
                _release_name(self.name, self._name_token)

    async def _run(self, stop: asyncio.Event) -> None:
        self._log.info("controller_starting", watches=len(self._watches))
        for w in self._watches:
            self._register(w)
        try:
            if not await self._wait_for_sync(stop):
                self._unregister()
                return
        except BaseException:
            self.queue.shut_down()
            self._unregister()
            raise
        self._log.info("controller_workers_starting", worker_count=self.max_concurrent_reconciles)
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                   for i in range(self.max_concurrent_reconciles)]
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopper, *workers], return_when=asyncio.FIRST_COMPLETED)
            self.queue.shut_down()
            self._log.info("controller_stopping", in_flight=self.queue.processing_count)
            results = await asyncio.gather(*workers, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    raise result
        finally:
            self.queue.shut_down()
            stopper.cancel()
            for t in workers:
                t.cancel()
            await asyncio.gather(stopper, *workers, return_exceptions=True)
            self._unregister()
            self._m_active.set(0)
            self._log.info("controller_stopped")

    async def _wait_for_sync(self, stop: asyncio.Event) -> bool:
        """True once synced; False if ``stop`` was set first."""
        deadline = self._clock.now() + self.cache_sync_timeout
        while not self._synced():
            if stop.is_set():
                self.queue.shut_down()
                return False
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                unsynced = [str(getattr(w.informer, "gvk", type(w.informer).__name__)) for w in self._watches if not (
                    w.informer.has_synced() and w.registration is not None and w.registration.has_synced())]
                raise CacheSyncTimeoutError(
                    f"controller {self.name!r}: caches did not sync within cache_sync_timeout="
                    f"{self.cache_sync_timeout:g}s (unsynced watches: {', '.join(unsynced)}); check the API server "
                    f"connection and RBAC list/watch permissions, or raise cache_sync_timeout"
                )
            sleeper = asyncio.ensure_future(self._clock.sleep(min(_SYNC_POLL_SECONDS, remaining)))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                stopper.cancel()
        return True

    async def _worker(self) -> None:
        while True:
            try:
                request, priority = await self.queue.get_with_priority()
            except ShutDown:
                return
            try:
                await self._reconcile_handler(request, priority)
            finally:
                self.queue.done(request)

    async def _reconcile_handler(self, request: Request, priority: int) -> None:
        reconcile_id = str(uuid.uuid4())
        self._m_active.inc()
        started = self._clock.now()
        with structlog.contextvars.bound_contextvars(
            controller=self.name, namespace=request.namespace, name=request.name, reconcile_id=reconcile_id
        ):
            try:
                if self.reconcile_timeout is None:
                    result: Any = await self.reconciler.reconcile(request)
                else:
                    result = await self._reconcile_with_timeout(request, self.reconcile_timeout)
                if result is None:
                    result = Result()
                elif not isinstance(result, Result):
                    raise TypeError(
                        f"reconcile returned {type(result).__name__}; it must return kreconcile.Result (or None)"
                    )
            except asyncio.CancelledError:
                raise
            except TerminalError as exc:
                self._m_terminal.inc()
                self._count_error()
                self._log.error("reconcile_terminal_error", error=str(exc), error_type=type(exc).__name__,
                                duration_s=self._clock.now() - started)
                return
            except Exception as exc:
                if isinstance(exc, self._panic_types):
                    if not self.recover_panic:
                        raise
                    self._m_panics.inc()
                    self._log.error("reconcile_panic", exc_info=True, requeues=self.queue.num_requeues(request),
                                    duration_s=self._clock.now() - started)
                else:
                    self._log.error(
                        "reconcile_error", error=str(exc), error_type=type(exc).__name__,
                        requeues=self.queue.num_requeues(request), duration_s=self._clock.now() - started,
                    )
                self.queue.add_rate_limited(request, priority=priority)
                self._count_error()
                return
            finally:
                self._m_time.observe(max(0.0, self._clock.now() - started))
                self._m_active.dec()
            self._account(request, result, priority)

    async def _reconcile_with_timeout(self, request: Request, timeout: float) -> Any:
        call = asyncio.ensure_future(self.reconciler.reconcile(request))
        timer = asyncio.ensure_future(self._clock.sleep(timeout))
        try:
            await asyncio.wait((call, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
        if call.cancelled():
            raise ReconcileTimeoutError(f"reconcile of {request} did not finish within reconcile_timeout={timeout:g}s")
        return call.result()

    def _count_error(self) -> None:
        self._m_errors.inc()
        self._m_total["error"].inc()

    def _account(self, request: Request, result: Result, priority: int) -> None:
        if result.requeue_after is not None and result.requeue_after > 0 and not math.isinf(result.requeue_after):
            self.queue.forget(request)
            self.queue.add_after(request, result.requeue_after, priority=priority)
            self._m_total["requeue_after"].inc()
            self._log.debug("reconcile_requeue_after", requeue_after_s=result.requeue_after)
        elif result.requeue:
            self.queue.add_rate_limited(request, priority=priority)
            self._m_total["requeue"].inc()
            self._log.debug("reconcile_requeue")
        else:
            self.queue.forget(request)
            self._m_total["success"].inc()
            self._log.debug("reconcile_succeeded")
