"""Fault injection for reliability tests (reference item 12).

``server.faults.inject(429, verb="update", resource="configmaps", times=2, retry_after=1)`` makes the next two
matching requests fail with the real Status shape (429 carries ``Retry-After`` and
``details.retryAfterSeconds``); ``add_latency`` delays matching requests; ``drop_watches`` cuts open watch
connections; ``expire_next_watch`` answers the next watch with 410 Expired. Verbs are the Kubernetes request verbs
(get, list, watch, create, update, patch, delete, deletecollection); ``resource`` is the plural, optionally with
``/subresource`` (``pods/status``). None matches everything.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import APIError

if TYPE_CHECKING:
    from .storage import Store

_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Expired",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}


@dataclass
class Fault:
    """An injected failure: ``times`` None means every matching request until :meth:`Faults.clear`."""

    code: int
    verb: str | None = None
    resource: str | None = None
    times: int | None = 1
    retry_after: int | None = None
    message: str | None = None
    hits: int = 0

    def matches(self, verb: str, resource: str) -> bool:
        return (self.verb in (None, verb)) and (self.resource in (None, resource, resource.split("/")[0]))


@dataclass
class _Latency:
    seconds: float
    verb: str | None
    resource: str | None


class Faults:
    """The server's fault injector (``APIServer.faults``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._faults: list[Fault] = []
        self._latency: list[_Latency] = []
        self._expire: list[str | None] = []

    def inject(self, code: int, *, verb: str | None = None, resource: str | None = None, times: int | None = 1,
               retry_after: int | None = None, message: str | None = None) -> Fault:
        """Fail the next ``times`` requests matching ``verb``/``resource`` with ``code`` (409, 429, 500, ...).

        ``retry_after`` (seconds) defaults to 1 for 429, as the real server's max-in-flight filter sends.
        Raises ValueError for a code that is not an error status.
        """
        if code < 400 or code > 599:
            raise ValueError(f"faults.inject: code must be an HTTP error status (400-599), got {code}")
        if code == 429 and retry_after is None:
            retry_after = 1
        fault = Fault(code, verb, resource, times, retry_after, message)
        self._faults.append(fault)
        return fault

    def add_latency(self, seconds: float, *, verb: str | None = None, resource: str | None = None) -> None:
        """Delay every matching request by ``seconds`` (real time) before it is served."""
        if seconds < 0:
            raise ValueError("faults.add_latency: seconds must be >= 0")
        self._latency.append(_Latency(seconds, verb, resource))

    def drop_watches(self, resource: str | None = None) -> int:
        """Abort open watch connections (of one resource plural, or all); returns how many were cut."""
        keys = [k for k in self._store.watchers if resource is None or k[1] == resource]
        return sum(self._store.close_watchers(k, abort=True) for k in keys)

    def expire_next_watch(self, resource: str | None = None) -> None:
        """Answer the next watch (of ``resource``, or any) with a 410 Expired ERROR event."""
        self._expire.append(resource)

    def take_forced_expiry(self, resource: str) -> bool:
        """Consume a pending forced expiry matching ``resource``."""
        for i, r in enumerate(self._expire):
            if r in (None, resource):
                del self._expire[i]
                return True
        return False

    def clear(self) -> None:
        """Remove every injected fault, latency and pending expiry."""
        self._faults.clear()
        self._latency.clear()
        self._expire.clear()

    async def before(self, verb: str, resource: str) -> None:
        """Apply latency, then raise the first matching injected fault (consuming one of its ``times``)."""
        delay = sum(x.seconds for x in self._latency if x.verb in (None, verb)
                    and x.resource in (None, resource, resource.split("/")[0]))
        if delay:
            await asyncio.sleep(delay)
        for fault in self._faults:
            if fault.matches(verb, resource):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                reason = _REASONS.get(fault.code, "InternalError")
                message = fault.message or f"injected fault: {reason} for {verb} {resource}"
                details = None
                headers = {}
                if fault.retry_after is not None:
                    details = {"retryAfterSeconds": fault.retry_after}
                    headers["Retry-After"] = str(fault.retry_after)
                raise APIError(fault.code, reason, message, details, headers)
