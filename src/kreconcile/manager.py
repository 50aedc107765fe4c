"""The manager: owns the client, the shared cache, the probe and metrics servers and leader election, and runs
every component (controllers, webhooks, user tasks) in controller-runtime's order.

Start order (each group starts after the previous one is up):

1. HTTP servers: health probes (``/healthz``, ``/readyz``) and ``/metrics`` — so probes and metrics answer while
   this replica waits for leadership;
2. webhook servers (runnables with ``runnable_group = "webhooks"``);
3. caches: the shared :class:`~kreconcile.cache.Cache` (and runnables with ``wait_for_cache_sync``); start waits
   until they have synced (``cache_sync_timeout``);
4. runnables that do not need leader election (``needs_leader_election()`` returns False);
5. leader election (when enabled), then the runnables that need it — controllers, and every runnable that does not
   say (controller-runtime's default).

Stop: when ``stop`` is set, groups stop in reverse order, each waiting for its runnables to return, all within
``graceful_shutdown_timeout`` seconds (30 s; 0 = don't wait; None = wait forever); stragglers are cancelled. A
runnable that raises is a fatal error: everything stops (gracefully) and :meth:`Manager.start` re-raises it. If
leadership is lost, everything is cancelled at once (no grace: another replica may already lead) and
:meth:`Manager.start` raises :class:`~kreconcile.leaderelection.LeaderElectionLost`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import structlog

from kreconcile import metrics
from kreconcile.cache import Cache, ObjectSelector
from kreconcile.cachedclient import CachedClient
from kreconcile.client import Client
from kreconcile.clock import Clock, RealClock
from kreconcile.config import RestConfig, in_cluster_namespace, load_config
from kreconcile.events import EventRecorder
from kreconcile.gvk import GVK
from kreconcile.healthz import Check, MetricsServer, ProbeServer, parse_bind_address
from kreconcile.informer import IndexFunc, Transform, strip_managed_fields
from kreconcile.leaderelection import LeaderElectionConfig, LeaderElectionLost, LeaderElector, default_identity
from kreconcile.runnable import Runnable

log = structlog.get_logger("kreconcile.manager")

GROUPS = ("webhooks", "caches", "others", "leader")
"""Runnable groups in start order (HTTP servers start before all of them, stop after)."""


class RunnableFunc:
    """Wraps ``async def fn(stop)`` as a :class:`~kreconcile.runnable.Runnable` (controller-runtime's
    ``manager.RunnableFunc``).

    Args:
        fn: runs until ``stop`` is set.
        needs_leader_election: start only on the leader (default False: a plain function is usually a server or
            a background task every replica runs).
        group: ``"webhooks"`` to start it with the webhook servers (before the caches).
    """

    def __init__(
        self, fn: Callable[[asyncio.Event], Awaitable[None]], *, needs_leader_election: bool = False,
        group: Literal["webhooks"] | None = None,
    ) -> None:
        self.fn = fn
        self._needs_leader_election = needs_leader_election
        if group is not None:
            self.runnable_group = group

    def needs_leader_election(self) -> bool:
        """As configured."""
        return self._needs_leader_election

    async def start(self, stop: asyncio.Event) -> None:
        """Run ``fn(stop)``."""
        await self.fn(stop)


class _Group:
    def __init__(self, name: str) -> None:
        self.name = name
        self.runnables: builtins.list[Runnable] = []
        self.tasks: builtins.list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()
        self.started = False


class Manager:
    """Runs controllers and other runnables with shared client, cache, probes, metrics and leader election.

    Args:
        config_or_client: a :class:`RestConfig`, a :class:`Client`, or None to :func:`load_config`.
        metrics_bind_address: where ``/metrics`` listens (``":8080"``; ``"0"`` disables).
        health_probe_bind_address: where ``/healthz`` and ``/readyz`` listen (``":8081"``; ``"0"`` disables).
        leader_election: campaign for a Lease before starting leader-only runnables (default False).
        leader_election_id: the Lease name (required with leader election).
        leader_election_namespace: the Lease namespace (default: the pod's namespace when in a cluster).
        lease_duration, renew_deadline, retry_period: seconds (15 / 10 / 2, client-go's defaults; validated:
            ``lease_duration > renew_deadline > 1.2 × retry_period``).
        leader_election_release_on_cancel: clear the Lease on a clean stop (default False).
        graceful_shutdown_timeout: seconds runnables get to return after stop (30; 0 = no wait; None = forever).
        cache_sync_timeout: seconds the caches get to sync at start (120, controller-runtime's default).
        namespaces, by_object, cache_transform, resync_period: cache scoping (see :class:`Cache`).
        uncached: kinds the manager's client reads live instead of from the cache.
        identity: this replica's leader-election identity (default ``hostname_uuid``).
        clock: injectable time for leader election, the cache and shutdown.

    Raises:
        ValueError: bad bind address or leader-election settings (the message names the option).
    """

    def __init__(
        self,
        config_or_client: RestConfig | Client | None = None,
        *,
        metrics_bind_address: str = ":8080",
        health_probe_bind_address: str = ":8081",
        leader_election: bool = False,
        leader_election_id: str = "",
        leader_election_namespace: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        leader_election_release_on_cancel: bool = False,
        graceful_shutdown_timeout: float | None = 30.0,
        cache_sync_timeout: float = 120.0,
        namespaces: Sequence[str] | None = None,
        by_object: Mapping[GVK, ObjectSelector] | None = None,
        cache_transform: Transform | None = strip_managed_fields,
        resync_period: float | None = None,
        uncached: Sequence[GVK] = (),
        identity: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or RealClock()
        if isinstance(config_or_client, Client):
            self.api_reader: Client = config_or_client
            self._owns_client = False
        else:
            cfg = config_or_client if config_or_client is not None else load_config()
            self.api_reader = Client(cfg, clock=self._clock)
            self._owns_client = True
        self.cache = Cache(
            self.api_reader,
            default_namespaces=namespaces,
            transform=cache_transform,
            by_object=by_object,
            resync_period=resync_period,
            clock=self._clock,
        )
        self.client = CachedClient(self.cache, self.api_reader, uncached)
        self.identity = identity or default_identity()
        self._metrics_addr = parse_bind_address(metrics_bind_address)
        self._probe_addr = parse_bind_address(health_probe_bind_address)
        self.probes: ProbeServer | None = ProbeServer(*self._probe_addr) if self._probe_addr else None
        self.metrics_server: MetricsServer | None = (
            MetricsServer(*self._metrics_addr, metrics.REGISTRY) if self._metrics_addr else None
        )
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        if graceful_shutdown_timeout is not None and graceful_shutdown_timeout < 0:
            raise ValueError("graceful_shutdown_timeout must be >= 0 seconds (0 = don't wait) or None (forever)")
        self.cache_sync_timeout = cache_sync_timeout
        self.leader_election: LeaderElectionConfig | None = None
        if leader_election:
            if not leader_election_id:
                raise ValueError("leader_election=True needs leader_election_id (the Lease name, e.g. 'kaito-lock')")
            ns = leader_election_namespace or in_cluster_namespace()
            if not ns:
                raise ValueError("leader_election=True outside a cluster needs leader_election_namespace")
            self.leader_election = LeaderElectionConfig(
                name=leader_election_id,
                namespace=ns,
                identity=self.identity,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                release_on_cancel=leader_election_release_on_cancel,
            )
        self.elector: LeaderElector | None = None
        self._elected = asyncio.Event()
        self._groups = {name: _Group(name) for name in GROUPS}
        self._groups["caches"].runnables.append(self.cache)
        self._recorders: builtins.list[EventRecorder] = []
        self._started = False
        self._fatal: BaseException | None = None
        self._wake: asyncio.Event | None = None

    # ---------------------------------------------------------------- registration

    def add(self, runnable: Runnable) -> None:
        """Add a runnable; it starts with its group (at once if that group is already running).

        Grouping: ``runnable_group = "webhooks"`` attribute → webhooks; has ``wait_for_cache_sync`` → caches;
        ``needs_leader_election()`` False → always-on; otherwise (True, or not defined) → leader-only.
        """
        if not callable(getattr(runnable, "start", None)):
            raise TypeError(f"{runnable!r} is not a Runnable: it needs 'async def start(self, stop)'")
        group = self._group_of(runnable)
        g = self._groups[group]
        g.runnables.append(runnable)
        if g.started:
            self._launch(g, runnable)

    def _group_of(self, runnable: Runnable) -> str:
        if getattr(runnable, "runnable_group", None) == "webhooks":
            return "webhooks"
        if callable(getattr(runnable, "wait_for_cache_sync", None)):
            return "caches"
        needs = getattr(runnable, "needs_leader_election", None)
        if callable(needs) and not needs():
            return "others"
        return "leader"

    def add_healthz_check(self, name: str, check: Check) -> None:
        """Add a liveness check served on ``/healthz`` and ``/healthz/<name>``.

        Raises:
            RuntimeError: the probe server is disabled. ValueError: the name is taken or malformed.
        """
        if self.probes is None:
            raise RuntimeError("health probes are disabled (health_probe_bind_address='0'); enable them to add checks")
        self.probes.add_healthz_check(name, check)

    def add_readyz_check(self, name: str, check: Check) -> None:
        """Add a readiness check served on ``/readyz`` and ``/readyz/<name>`` (see :meth:`add_healthz_check`)."""
        if self.probes is None:
            raise RuntimeError("health probes are disabled (health_probe_bind_address='0'); enable them to add checks")
        self.probes.add_readyz_check(name, check)

    def event_recorder(self, name: str) -> EventRecorder:
        """An events.k8s.io/v1 recorder reporting as ``name``; flushed when the manager stops."""
        rec = EventRecorder(self.api_reader, name, self.identity, clock=self._clock)
        self._recorders.append(rec)
        return rec

    def index_field(self, gvk: GVK, name: str, fn: IndexFunc) -> None:
        """Add a cache index (controller-runtime's ``mgr.GetFieldIndexer().IndexField``)."""
        self.cache.index_field(gvk, name, fn)

    def elected(self) -> asyncio.Event:
        """Set once this replica may run leader-only runnables (at once when leader election is off)."""
        return self._elected

    @property
    def metrics_url(self) -> str | None:
        """``http://host:port`` of the metrics server once started (None when disabled)."""
        return self.metrics_server.url if self.metrics_server else None

    @property
    def health_probe_url(self) -> str | None:
        """``http://host:port`` of the probe server once started (None when disabled)."""
        return self.probes.url if self.probes else None

    # ---------------------------------------------------------------- running

    def _launch(self, group: _Group, runnable: Runnable) -> None:
        task = asyncio.create_task(runnable.start(group.stop), name=f"{group.name}: {type(runnable).__name__}")
        group.tasks.append(task)

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled():
                return
            err = t.exception()
            if err is not None and self._fatal is None:
                log.error("runnable failed", group=group.name, runnable=type(runnable).__name__, error=repr(err))
                self._fatal = err
                if self._wake is not None:
                    self._wake.set()

        task.add_done_callback(done)

    def _start_group(self, name: str) -> None:
        g = self._groups[name]
        g.started = True
        for r in builtins.list(g.runnables):
            self._launch(g, r)

    async def _wait_or_wake(self, aw: Any, stop: asyncio.Event) -> Any:
        """Await ``aw`` unless stop or a fatal error comes first (then return None)."""
        assert self._wake is not None
        task = asyncio.ensure_future(aw)
        waker = asyncio.ensure_future(self._wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Run everything until ``stop`` is set (or forever), then shut down.

        Raises:
            LeaderElectionLost: leadership was lost (everything was cancelled at once).
            TimeoutError: the caches did not sync within ``cache_sync_timeout``.
            Exception: the first error a runnable raised (after a graceful shutdown).
            OSError: a server could not bind its address.
            RuntimeError: the manager was already started.
        """
        if self._started:
            raise RuntimeError("manager already started; create a new Manager to start again")
        self._started = True
        stop = stop or asyncio.Event()
        self._wake = asyncio.Event()
        servers = [s for s in (self.probes, self.metrics_server) if s is not None]
        elector_task: asyncio.Task[None] | None = None
        lost = False
        try:
            for s in servers:
                await s.start()
            self._start_group("webhooks")
            self._start_group("caches")
            synced = await self._wait_or_wake(self._wait_caches(), stop)
            if synced is False:
                raise TimeoutError(
                    f"caches did not sync within {self.cache_sync_timeout} s; check RBAC (list/watch) and that the "
                    f"kinds' CRDs are installed"
                )
            if not stop.is_set() and self._fatal is None:
                self._start_group("others")
                if self.leader_election is not None:
                    self.elector = LeaderElector(self.api_reader, self.leader_election, clock=self._clock)
                    elector_task = asyncio.create_task(self._campaign(self.elector), name="leader-election")
                else:
                    self._elected.set()
                    self._start_group("leader")
                await self._wait_or_wake(asyncio.Event().wait(), stop)
            lost = isinstance(self._fatal, LeaderElectionLost)
        finally:
            await self._shutdown(elector_task, immediate=lost or isinstance(self._fatal, LeaderElectionLost))
            for s in reversed(servers):
                await s.stop()
            if self._owns_client:
                await self.api_reader.close()
        if self._fatal is not None:
            raise self._fatal

    async def _wait_caches(self) -> bool:
        ok = await self.cache.wait_for_cache_sync(self.cache_sync_timeout)
        for r in self._groups["caches"].runnables:
            if r is not self.cache:
                ok = ok and bool(await r.wait_for_cache_sync(self.cache_sync_timeout))  # type: ignore[attr-defined]
        return ok

    async def _campaign(self, elector: LeaderElector) -> None:
        stop = self._groups["leader"].stop
        run = asyncio.create_task(elector.run(stop), name="leader-elector")
        elected = asyncio.create_task(elector.elected.wait())
        try:
            await asyncio.wait({run, elected}, return_when=asyncio.FIRST_COMPLETED)
            if elected.done() and not stop.is_set():
                self._elected.set()
                self._start_group("leader")
            await run
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # LeaderElectionLost, or a bug in the elector: both are fatal
            if self._fatal is None:
                self._fatal = err
            assert self._wake is not None
            self._wake.set()
        finally:
            for t in (run, elected):
                t.cancel()
            await asyncio.gather(run, elected, return_exceptions=True)

    async def _shutdown(self, elector_task: asyncio.Task[None] | None, *, immediate: bool) -> None:
        timeout = 0.0 if immediate else self.graceful_shutdown_timeout
        deadline = None if timeout is None else self._clock.now() + timeout
        order = ("leader", "others", "caches", "webhooks")
        for name in order:
            g = self._groups[name]
            g.stop.set()
            if name == "leader" and elector_task is not None:
                # the elector stops with the leader group; it may release the lease
                pending_tasks = [*g.tasks]
                await self._wait_tasks(pending_tasks, deadline)
                if immediate:
                    elector_task.cancel()
                await asyncio.gather(elector_task, return_exceptions=True)
                continue
            await self._wait_tasks(g.tasks, deadline)
        for rec in self._recorders:
            if immediate:
                continue
            try:
                await self._bounded(rec.aclose(), deadline)
            except Exception as err:
                log.warning("event recorder close failed", error=str(err))

    async def _bounded(self, aw: Any, deadline: float | None) -> None:
        task = asyncio.ensure_future(aw)
        if deadline is None:
            await task
            return
        remaining = deadline - self._clock.now()
        if remaining > 0:
            timer = asyncio.ensure_future(self._clock.sleep(remaining))
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _wait_tasks(self, tasks: Sequence[asyncio.Task[None]], deadline: float | None) -> None:
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return
        remaining = None if deadline is None else deadline - self._clock.now()
        if remaining is None:
            await asyncio.wait(pending)
        elif remaining > 0:
            timer = asyncio.ensure_future(self._clock.sleep(remaining))
            waiter = asyncio.ensure_future(asyncio.wait(pending))
            await asyncio.wait({timer, waiter}, return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
            waiter.cancel()
        stragglers = [t for t in pending if not t.done()]
        if stragglers:
            if remaining is not None and remaining > 0:
                log.warning("graceful shutdown timed out; cancelling runnables",
                            runnables=[t.get_name() for t in stragglers])
            for t in stragglers:
                t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # ---------------------------------------------------------------- process entry

    async def run_until_signal(self) -> None:
        """:meth:`start` until SIGTERM or SIGINT; a second signal exits the process with status 1 at once."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        received = 0

        def on_signal() -> None:
            nonlocal received
            received += 1
            if received > 1:
                os._exit(1)
            log.info("signal received, shutting down")
            stop.set()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal)
        try:
            await self.start(stop)
        finally:
            for sig in signals:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    def run(self) -> None:
        """Blocking entry point for ``main()``: run in a new event loop until SIGTERM/SIGINT."""
        asyncio.run(self.run_until_signal())


__all__ = ["GROUPS", "CachedClient", "Manager", "RunnableFunc"]
