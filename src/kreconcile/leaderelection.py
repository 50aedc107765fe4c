"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics (``tools/leaderelection``).

Every candidate tries to acquire the Lease every ``retry_period`` (stretched by up to 120 % jitter). A Lease held
by someone else counts as taken until ``lease_duration`` has passed, *on this process's clock*, since this
candidate last saw its record change (clocks of different machines are never compared). The leader renews every
``retry_period``; if it cannot renew within ``renew_deadline`` of starting a renewal it gives up leadership at
once and :meth:`LeaderElector.run` raises :class:`LeaderElectionLost`. Because ``renew_deadline <
lease_duration``, the old leader stops before any other candidate can take over.

The Lease fields: ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``, ``renewTime`` (MicroTime,
``2006-01-02T15:04:05.000000Z``) and ``leaseTransitions`` (incremented whenever the holder changes).
Writes use the Lease's resourceVersion, so two candidates racing for it cannot both win.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from kreconcile import metrics
from kreconcile.clock import Clock, RealClock
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK

log = structlog.get_logger("kreconcile.leaderelection")

LEASE_GVK = GVK("coordination.k8s.io", "v1", "Lease")
"""The Lease kind used as the lock."""
JITTER_FACTOR = 1.2
"""client-go's ``JitterFactor``: acquire retries wait ``retry_period × (1 + rand × 1.2)``."""


class LeaderElectionLost(RuntimeError):
    """This process was the leader and could not renew the Lease within the renew deadline; everything that
    needs leadership has been stopped. Exit (and let the Deployment restart the pod), as controller-runtime does."""


class LeaseClient(Protocol):
    """The client calls the elector makes (:class:`kreconcile.client.Client` satisfies it)."""

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]: ...

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    async def update(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...


def default_identity() -> str:
    """``<hostname>_<uuid4>``, unique per process (controller-runtime's default)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Lease lock settings; defaults are client-go's / controller-runtime's.

    Raises:
        ValueError: a duration is not positive, ``lease_duration <= renew_deadline``, or
            ``renew_deadline <= 1.2 × retry_period`` (the rule client-go enforces).
    """

    name: str
    """Lease name (the manager's ``leader_election_id``)."""
    namespace: str
    """Lease namespace (the operator's own namespace in a cluster)."""
    identity: str = ""
    """This candidate's name in ``holderIdentity``; empty = :func:`default_identity`."""
    lease_duration: float = 15.0
    """Seconds a non-leader waits after the last observed change before taking over an unrenewed Lease."""
    renew_deadline: float = 10.0
    """Seconds the leader keeps retrying a renewal before giving up leadership; must be < lease_duration."""
    retry_period: float = 2.0
    """Seconds between acquire/renew attempts."""
    release_on_cancel: bool = False
    """On a clean stop, clear ``holderIdentity`` so another candidate takes over at once instead of waiting
    ``lease_duration`` (controller-runtime's ``LeaderElectionReleaseOnCancel``; off by default there too)."""

    def __post_init__(self) -> None:
        if not self.name or not self.namespace:
            raise ValueError("leader election needs a lease name (leader_election_id) and a namespace "
                             "(leader_election_namespace)")
        for field in ("lease_duration", "renew_deadline", "retry_period"):
            if getattr(self, field) <= 0:
                raise ValueError(f"leader election: {field} must be > 0 seconds (got {getattr(self, field)})")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"leader election: lease_duration ({self.lease_duration} s) must be greater than renew_deadline "
                f"({self.renew_deadline} s)"
            )
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"leader election: renew_deadline ({self.renew_deadline} s) must be greater than "
                f"{JITTER_FACTOR} × retry_period ({JITTER_FACTOR * self.retry_period:g} s)"
            )


def format_micro_time(epoch: float) -> str:
    """A MicroTime string (``2026-01-01T00:00:00.000000Z``) for epoch seconds."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for one Lease. ``elected`` is set while this process leads.

    Args:
        client: reads and writes the Lease.
        config: the lock settings.
        clock, rng: injectable time and jitter.
    """

    def __init__(
        self, client: LeaseClient, config: LeaderElectionConfig, *, clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.identity = config.identity or default_identity()
        self._clock = clock or RealClock()
        self._rng = rng or random.Random()
        self.elected = asyncio.Event()
        """Set when this process acquires the Lease (never cleared: a lost lease ends the process)."""
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None
        self._gauge = metrics.leader_election_master_status.labels(name=config.name)
        self._gauge.set(0)

    def is_leader(self) -> bool:
        """True while this process holds the Lease (as of its last successful renewal)."""
        return self.elected.is_set() and self._observed is not None and \
            self._observed.get("holderIdentity") == self.identity

    @property
    def leader(self) -> str | None:
        """The holder last observed in the Lease (None before the first read)."""
        return (self._observed or {}).get("holderIdentity") or None

    def _record(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        return dict(lease.get("spec") or {})

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's ``tryAcquireOrRenew``): True when this process holds the Lease afterwards."""
        cfg = self.config
        now_wall = format_micro_time(self._clock.wall())
        try:
            lease = await self.client.get(LEASE_GVK, cfg.name, cfg.namespace)
        except NotFound:
            spec = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(cfg.lease_duration),
                "acquireTime": now_wall,
                "renewTime": now_wall,
                "leaseTransitions": 0,
            }
            try:
                created = await self.client.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                        "spec": spec,
                    }
                )
            except Exception as err:
                log.info("lease create failed", lease=cfg.name, error=str(err))
                return False
            self._set_observed(created)
            return True
        except Exception as err:
            log.info("lease read failed", lease=cfg.name, error=str(err))
            return False

        record = self._record(lease)
        if record != self._observed:
            self._set_observed(lease)
        holder = record.get("holderIdentity") or ""
        if holder and holder != self.identity and self._observed_at + cfg.lease_duration > self._clock.now():
            return False
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(cfg.lease_duration),
            "renewTime": now_wall,
        }
        if holder == self.identity:
            spec["acquireTime"] = record.get("acquireTime") or now_wall
            spec["leaseTransitions"] = int(record.get("leaseTransitions") or 0)
        else:
            spec["acquireTime"] = now_wall
            spec["leaseTransitions"] = int(record.get("leaseTransitions") or 0) + 1
        updated_lease = dict(lease)
        updated_lease["spec"] = {**record, **spec}
        try:
            updated = await self.client.update(updated_lease)
        except Exception as err:
            log.info("lease update failed", lease=cfg.name, error=str(err))
            return False
        self._set_observed(updated)
        return True

    def _set_observed(self, lease: Mapping[str, Any]) -> None:
        record = self._record(lease)
        if self._observed is None or record.get("holderIdentity") != self._observed.get("holderIdentity"):
            log.info("new leader observed", lease=self.config.name, leader=record.get("holderIdentity") or None)
        self._observed = record
        self._observed_at = self._clock.now()
        self._lease = dict(lease)

    async def _attempt_with_deadline(self, deadline: float) -> bool:
        """One attempt that counts as failed if it has not finished by ``deadline`` (clock time)."""
        remaining = deadline - self._clock.now()
        if remaining <= 0:
            return False
        attempt = asyncio.ensure_future(self.try_acquire_or_renew())
        timer = asyncio.ensure_future(self._clock.sleep(remaining))
        try:
            await asyncio.wait({attempt, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if attempt.done():
            return attempt.result()
        attempt.cancel()
        await asyncio.gather(attempt, return_exceptions=True)
        return False

    async def _acquire(self, stop: asyncio.Event) -> bool:
        cfg = self.config
        log.info("attempting to acquire leader lease", lease=f"{cfg.namespace}/{cfg.name}", identity=self.identity)
        while not stop.is_set():
            if await self.try_acquire_or_renew():
                return True
            await self._sleep_or_stop(cfg.retry_period * (1.0 + self._rng.random() * JITTER_FACTOR), stop)
        return False

    async def _sleep_or_stop(self, seconds: float, stop: asyncio.Event) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire the Lease (waiting as long as it takes), set :attr:`elected`, then renew until ``stop``.

        Returns when ``stop`` is set (releasing the Lease first if ``release_on_cancel``).

        Raises:
            LeaderElectionLost: a renewal did not succeed within ``renew_deadline``.
        """
        cfg = self.config
        if not await self._acquire(stop):
            return
        log.info("successfully acquired lease", lease=f"{cfg.namespace}/{cfg.name}", identity=self.identity)
        self._gauge.set(1)
        self.elected.set()
        try:
            while True:
                await self._sleep_or_stop(cfg.retry_period, stop)
                if stop.is_set():
                    if cfg.release_on_cancel:
                        await self.release()
                    return
                start = self._clock.now()
                deadline = start + cfg.renew_deadline
                renewed = False
                while self._clock.now() < deadline and not stop.is_set():
                    if await self._attempt_with_deadline(deadline):
                        renewed = True
                        break
                    await self._sleep_or_stop(min(cfg.retry_period, max(0.0, deadline - self._clock.now())), stop)
                if stop.is_set() and not renewed:
                    return
                if not renewed:
                    log.error("failed to renew lease", lease=f"{cfg.namespace}/{cfg.name}",
                              renew_deadline_s=cfg.renew_deadline)
                    raise LeaderElectionLost(
                        f"leader election lost: could not renew lease {cfg.namespace}/{cfg.name} within "
                        f"{cfg.renew_deadline} s"
                    )
        finally:
            self._gauge.set(0)

    async def release(self) -> bool:
        """Give the Lease up (holderIdentity cleared, ``leaseDurationSeconds: 1``) if this process holds it."""
        if self._lease is None or not self._observed or self._observed.get("holderIdentity") != self.identity:
            return False
        now = format_micro_time(self._clock.wall())
        lease = dict(self._lease)
        lease["spec"] = {
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": int(self._observed.get("leaseTransitions") or 0),
        }
        try:
            self._set_observed(await self.client.update(lease))
        except Exception as err:
            log.warning("lease release failed", lease=self.config.name, error=str(err))
            return False
        return True
