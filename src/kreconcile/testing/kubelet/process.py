"""Container processes: one process group per container, never orphaned.

Each container runs as the leader of a new session (``setsid``), so it and everything it forks share one process
group that :func:`os.killpg` reaches. Three layers keep processes from outliving the kubelet:

1. normal stop: SIGTERM to the group, SIGKILL after the grace period (:meth:`ContainerProcess.terminate`);
2. interpreter exit, including Ctrl-C: an ``atexit`` hook SIGKILLs every group still registered;
3. the kubelet's process dying hard (SIGKILL, crash): on Linux the container's leader gets ``PR_SET_PDEATHSIG``
   (SIGKILL) via ``prctl`` (through ctypes), so it dies with its parent. Grandchildren of a container that
   escaped this way are not covered (the kernel signals direct children only); documented in
   ``docs/local-cluster.md``.

Memory limits (no cgroups here) are enforced by :func:`group_rss_bytes`: the kubelet samples the resident set of
the whole process group and SIGKILLs it above ``resources.limits.memory``, reporting ``OOMKilled`` like the kernel's
OOM killer would.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_live_groups: set[int] = set()

Sleep = Callable[[float], Awaitable[None]]
"""A clock's ``sleep``: ``await sleep(seconds)``."""


def _kill_all_groups() -> None:
    for pgid in list(_live_groups):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    _live_groups.clear()


atexit.register(_kill_all_groups)


def live_process_groups() -> frozenset[int]:
    """Process group ids of containers this interpreter started and has not yet reaped (for leak checks)."""
    return frozenset(_live_groups)


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_prctl = _load_prctl()
_spawner_pid = [os.getpid()]


def _child_setup() -> None:
    """Runs in the child between fork and exec: die with the parent (Linux only)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then we are already orphaned.
        if os.getppid() != _spawner_pid[0]:
            os._exit(137)


class ContainerProcess:
    """A running container: the leader process of its own process group, output appended to a log file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self._proc = proc
        self._log = log
        self.pid = proc.pid
        _live_groups.add(proc.pid)

    @classmethod
    async def start(cls, argv: Sequence[str], env: Mapping[str, str], cwd: str, log_path: Path) -> ContainerProcess:
        """Start ``argv`` in a new session with stdout and stderr appended to ``log_path``.

        Raises:
            OSError: the executable is missing or not executable, or ``cwd`` does not exist (the kubelet reports
                these as a container that could not start, exit code 128, like a runtime's ``StartError``).
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
        _spawner_pid[0] = os.getpid()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup,
            )
        except BaseException:
            log.close()
            raise
        return cls(proc, log)

    @property
    def returncode(self) -> int | None:
        """The exit status once exited (negative = killed by that signal), else None."""
        return self._proc.returncode

    async def wait(self) -> int:
        """Wait for the leader to exit, then kill what is left of its group; returns the raw return code."""
        code = await self._proc.wait()
        self._reap_group()
        return code

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no error if it is already gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def terminate(self, grace_seconds: float, sleep: Sleep) -> int:
        """SIGTERM the group, wait up to ``grace_seconds`` (on the kubelet's clock), then SIGKILL; returns the code."""
        if self._proc.returncode is None:
            self.signal_group(signal.SIGTERM)
            waiter = asyncio.ensure_future(self._proc.wait())
            timer = asyncio.ensure_future(sleep(max(0.0, grace_seconds)))
            try:
                await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
            if not waiter.done():
                self.signal_group(signal.SIGKILL)
            await waiter
        self._reap_group()
        return self._proc.returncode if self._proc.returncode is not None else -signal.SIGKILL

    def _reap_group(self) -> None:
        self.signal_group(signal.SIGKILL)
        _live_groups.discard(self.pid)
        if not self._log.closed:
            self._log.close()


def exit_code(returncode: int) -> int:
    """The container exit code Kubernetes reports: a process killed by signal N exits ``128 + N``."""
    return 128 - returncode if returncode < 0 else returncode


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in group ``pgid``, in bytes, from ``/proc/*/stat`` (0 off Linux)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the ")" that closes comm: state ppid pgrp session ... rss is field 24 (1-based).
        rest = stat[stat.rfind(")") + 2 :].split()
        try:
            if int(rest[2]) == pgid:
                total += int(rest[21]) * page
        except (IndexError, ValueError):
            continue
    return total
