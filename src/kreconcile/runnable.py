"""What a :class:`~kreconcile.manager.Manager` runs: controllers, informers' cache, servers, user tasks."""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable


@runtime_checkable
class Runnable(Protocol):
    """A long-running component started by the manager.

    ``start`` runs until ``stop`` is set, then finishes its in-flight work and returns; the manager cancels it if
    it has not returned within the graceful shutdown timeout. Raising from ``start`` (before ``stop`` is set) is a
    fatal error: the manager stops everything and reports it.
    """

    async def start(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        ...


@runtime_checkable
class LeaderElectionRunnable(Protocol):
    """A runnable that says whether it may only run on the elected leader (controllers do, by default)."""

    def needs_leader_election(self) -> bool:
        """True to start only after this process wins the Lease; False to run on every replica."""
        ...
