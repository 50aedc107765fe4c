"""Watch streams (reference item 8): ``?watch=true`` (also ``1``/``True``) on a collection.

- ``resourceVersion`` absent or ``"0"``: an ADDED event per current object, then live events.
- ``resourceVersion=N``: only events after N; if N is older than the retained window, the stream carries one
  ``ERROR`` event with a 410 ``Expired`` Status (HTTP 200), exactly like the real watch cache, then ends.
- ``sendInitialEvents=true`` (with ``resourceVersionMatch=NotOlderThan``): the initial ADDED burst followed by a
  BOOKMARK annotated ``k8s.io/initial-events-end: "true"``.
- ``allowWatchBookmarks=true``: a BOOKMARK (``kind``, ``apiVersion``, ``metadata.resourceVersion``) every
  ``bookmark_interval`` seconds of the server's clock and 2 s before the deadline (the real cacher's
  ``nextBookmarkTime``), carrying the resource's last event version, and only when that is newer than what the
  client already has (so an idle resource sends none, as kube-apiserver 1.20 does).
- ``timeoutSeconds``: the stream ends cleanly after that many seconds of the server's clock (default: a random
  30-60 minutes, the real server's ``--min-request-timeout`` rule).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import table
from .errors import APIError, bad_request, expired
from .resources import ResourceType
from .selectors import make_filter, parse_field_selector, parse_label_selector
from .storage import WatchItem

if TYPE_CHECKING:
    from .server import APIServer

_DISCONNECT_POLL_S = 5.0
"""Real seconds between checks that the client is still connected while no event flows."""


def _next_bookmark(now: float, deadline: float, interval: float) -> float:
    """Like the real cacher: every ``interval`` seconds, and once about 2 s before the watch's deadline."""
    before_deadline = deadline - 2.0
    if now < before_deadline:
        return min(now + interval, before_deadline)
    return now + interval


def _bookmark(rt: ResourceType, rv: int, annotations: dict[str, str] | None = None) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
    if annotations:
        meta["annotations"] = annotations
    return _line("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta})


async def _sleep_then_wake(clock: Any, seconds: float, watcher: Any) -> None:
    await clock.sleep(seconds)
    watcher.wake()


def truthy(value: str | None) -> bool:
    """``watch``-style booleans: ``true``, ``True``, ``1`` (reference item 1)."""
    return (value or "").lower() in ("true", "1")


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


async def serve_watch(server: APIServer, request: web.Request, rt: ResourceType, namespace: str | None
                      ) -> web.StreamResponse:
    """Stream watch events for ``rt`` in ``namespace`` (None: all namespaces) until timeout or disconnect."""
    q = request.query
    pred = make_filter(parse_label_selector(q.get("labelSelector")),
                       parse_field_selector(q.get("fieldSelector"), rt.key))
    rv_param = q.get("resourceVersion", "")
    since: int | None = None
    if rv_param not in ("", "0"):
        try:
            since = int(rv_param)
        except ValueError as e:
            raise bad_request(f'invalid resource version "{rv_param}"') from e
    initial_events = truthy(q.get("sendInitialEvents"))
    if initial_events and q.get("resourceVersionMatch") != "NotOlderThan":
        raise APIError(422, "Invalid", "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                       "resourceVersionMatch to NotOlderThan")
    bookmarks = truthy(q.get("allowWatchBookmarks"))
    timeout_param = q.get("timeoutSeconds")
    try:
        timeout = float(timeout_param) if timeout_param else random.uniform(1800, 3600)
    except ValueError as e:
        raise bad_request(f"invalid timeoutSeconds {timeout_param!r}") from e
    render = server.renderer(request, rt)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})
    error: APIError | None = None
    if server.faults.take_forced_expiry(rt.plural):
        error = expired(f"too old resource version: {since or 1} ({server.store.rv})")
    elif since is not None and not initial_events:
        oldest = server.store.too_old(rt.key, since)
        if oldest is not None:
            error = expired(f"too old resource version: {since} ({oldest + 1})")
    if error is not None:
        await resp.prepare(request)
        await resp.write(_line("ERROR", error.status()))
        await resp.write_eof()
        return resp
    watcher, initial = server.store.subscribe(rt.key, namespace, pred, None if initial_events else since)
    try:
        await resp.prepare(request)
        plain = table.wants_table(request.headers.get("Accept", "")) is None

        def encode(item: WatchItem) -> bytes:
            kind, obj, cache = item
            if not plain:
                return _line(kind, render(obj))
            line = cache.get((kind, rt.api_version))
            if line is None:
                line = cache[(kind, rt.api_version)] = _line(kind, render(obj))
            return line

        chunk = b"".join(encode(i) for i in initial)
        if initial_events:
            chunk += _bookmark(rt, server.store.rv, {"k8s.io/initial-events-end": "true"})
        if chunk:
            await resp.write(chunk)
        clock = server.clock
        deadline = clock.now() + timeout
        next_bookmark = _next_bookmark(clock.now(), deadline, server.bookmark_interval)
        sent_rv = since if since is not None else server.store.rv
        loop = asyncio.get_running_loop()
        timer: asyncio.Future[Any] | None = None
        timer_due = -1.0
        poll = loop.call_later(_DISCONNECT_POLL_S, watcher.wake)
        try:
            while True:
                now = clock.now()
                if now >= deadline:
                    break
                if watcher.pending:
                    lines = []
                    while watcher.pending:
                        item = watcher.pending.popleft()
                        sent_rv = max(sent_rv, int(item[1]["metadata"].get("resourceVersion") or 0))
                        lines.append(encode(item))
                    await resp.write(b"".join(lines))
                    continue
                if watcher.closed:
                    if watcher.abort and request.transport is not None:
                        request.transport.abort()
                        return resp
                    break
                if request.transport is None or request.transport.is_closing():
                    break
                if bookmarks and now >= next_bookmark:
                    next_bookmark = _next_bookmark(now, deadline, server.bookmark_interval)
                    last = server.store.last_rv.get(rt.key, 0)
                    if last > sent_rv:  # like the cacher: only a version newer than what the client has
                        sent_rv = last
                        await resp.write(_bookmark(rt, last))
                    continue
                wake = min(deadline, next_bookmark) if bookmarks else deadline
                if timer is None or timer.done() or timer_due != wake:
                    if timer is not None:
                        timer.cancel()
                    timer, timer_due = asyncio.ensure_future(_sleep_then_wake(clock, wake - now, watcher)), wake
                if poll.cancelled() or poll.when() <= loop.time():
                    poll = loop.call_later(_DISCONNECT_POLL_S, watcher.wake)
                watcher.waiter = loop.create_future()
                await watcher.waiter
                watcher.waiter = None
        finally:
            poll.cancel()
            if timer is not None:
                timer.cancel()
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
        pass
    finally:
        server.store.unsubscribe(watcher)
    return resp
