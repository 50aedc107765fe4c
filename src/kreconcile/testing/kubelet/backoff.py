"""The kubelet's restart and image-pull back-off (client-go ``flowcontrol.Backoff`` as the kubelet uses it), and
the volume manager's mount retry back-off (:class:`RetryBackoff`).

Per container: the first failure restarts at once and arms the back-off at 10 s; each later failure waits the
current back-off and doubles it, capped at 300 s (``kubelet.go``: ``backOffPeriod = 10s``, ``MaxContainerBackOff =
300s``). An entry idle for more than twice the cap (600 s, e.g. a container that ran 10 minutes) starts over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INITIAL_BACKOFF_S = 10.0
"""First back-off, seconds (kubelet ``backOffPeriod``)."""
MAX_BACKOFF_S = 300.0
"""Back-off cap, seconds (kubelet ``MaxContainerBackOff``)."""


@dataclass
class Backoff:
    """Per-container back-off state. ``next(now)`` returns how long to wait before the next start."""

    initial: float = INITIAL_BACKOFF_S
    maximum: float = MAX_BACKOFF_S
    _current: float = field(default=0.0, init=False)
    _last_update: float | None = field(default=None, init=False)

    def next(self, now: float) -> float:
        """Record a failure at monotonic time ``now``; returns the delay before restarting (0 for the first)."""
        expired = self._last_update is not None and now - self._last_update > 2 * self.maximum
        if self._last_update is None or expired:
            self._current = self.initial
            self._last_update = now
            return 0.0
        delay = self._current
        self._current = min(self._current * 2, self.maximum)
        self._last_update = now + delay
        return delay

    @property
    def current(self) -> float:
        """The back-off the next failure would wait (0 before any failure)."""
        return self._current if self._last_update is not None else 0.0


VOLUME_INITIAL_BACKOFF_S = 0.5
"""First wait before retrying a failed volume mount, seconds (``initialDurationBeforeRetry`` in
``pkg/util/goroutinemap/exponentialbackoff/exponential_backoff.go``)."""
VOLUME_MAX_BACKOFF_S = 122.0
"""Cap of the mount retry wait, seconds (``maxDurationBeforeRetry`` = 2m2s, same file)."""


@dataclass
class RetryBackoff:
    """The volume manager's per-operation back-off: each failure waits ``initial`` (0.5 s), then twice the last
    wait, capped at ``maximum`` (2m2s), so a pod whose ConfigMap is missing retries (and records a FailedMount
    Event) at 0.5, 1, 2, 4, ... 64, 122, 122 s instead of every second."""

    initial: float = VOLUME_INITIAL_BACKOFF_S
    maximum: float = VOLUME_MAX_BACKOFF_S
    _last: float = field(default=0.0, init=False)

    def next(self) -> float:
        """Record a failure; returns how long to wait before the next attempt."""
        self._last = self.initial if self._last <= 0 else min(self._last * 2, self.maximum)
        return self._last


def go_duration(seconds: float) -> str:
    """Seconds as Go's ``time.Duration.String`` prints whole seconds: ``10s``, ``1m20s``, ``5m0s``."""
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
