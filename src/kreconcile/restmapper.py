"""GroupVersionKind ↔ GroupVersionResource, from the API server's discovery documents.

The mapper is lazy like controller-runtime's dynamic RESTMapper: it fetches one group-version's
``APIResourceList`` (``/api/v1`` or ``/apis/{group}/{version}``) the first time a kind of that group-version is
asked for, caches it, and fetches it again on a miss (a CRD installed after start becomes usable without a
restart). Concurrent misses for the same group-version share one request; a group-version that keeps missing is
re-fetched at most once per ``min_refresh_interval`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kreconcile.clock import Clock, RealClock
from kreconcile.errors import NoKindMatchError, NotFound
from kreconcile.gvk import GVK, GVR

DiscoveryFetch = Callable[[str], Awaitable[dict[str, Any]]]
"""Fetches a discovery path (``/api/v1``, ``/apis/apps/v1``) and returns its ``APIResourceList`` dict; raises
:class:`~kreconcile.errors.NotFound` when the group-version is not served."""


@dataclass(frozen=True)
class RESTMapping:
    """Where a kind lives: its resource (plural), whether it is namespaced, and which subresources it serves."""

    gvk: GVK
    gvr: GVR
    namespaced: bool
    subresources: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path, e.g. ``/apis/apps/v1/namespaces/ns/deployments/web/status``.

        ``namespace`` is ignored for cluster-scoped kinds; omitted for namespaced kinds it addresses all
        namespaces (valid for list/watch only).
        """
        g = self.gvr
        base = f"/apis/{g.group}/{g.version}" if g.group else f"/api/{g.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{g.resource}"
        if name is not None:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


def discovery_path(group: str, version: str) -> str:
    """``/api/v1`` for the core group, else ``/apis/{group}/{version}``."""
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


class RESTMapper:
    """Maps kinds to resources with a per-group-version discovery cache.

    Args:
        fetch: reads a discovery document (see :data:`DiscoveryFetch`).
        clock: for the refresh rate limit.
        min_refresh_interval: seconds between two refreshes of the same group-version caused by misses (1 s).
    """

    def __init__(self, fetch: DiscoveryFetch, *, clock: Clock | None = None, min_refresh_interval: float = 1.0) -> None:
        self._fetch = fetch
        self._clock = clock or RealClock()
        self._min_refresh = min_refresh_interval
        self._by_kind: dict[GVK, RESTMapping] = {}
        self._by_resource: dict[GVR, RESTMapping] = {}
        self._fetched_at: dict[tuple[str, str], float] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}

    def register(self, mapping: RESTMapping) -> None:
        """Add a mapping by hand (kinds the server does not advertise, or tests)."""
        self._by_kind[mapping.gvk] = mapping
        self._by_resource[mapping.gvr] = mapping

    def reset(self) -> None:
        """Forget everything learned from discovery (the next lookup fetches again)."""
        self._by_kind.clear()
        self._by_resource.clear()
        self._fetched_at.clear()

    async def mapping(self, gvk: GVK) -> RESTMapping:
        """The mapping for ``gvk``, fetching or refreshing its group-version's discovery on a miss.

        Raises:
            NoKindMatchError: the server does not serve ``gvk`` even after a refresh.
        """
        found = self._by_kind.get(gvk)
        if found is not None:
            return found
        await self._refresh(gvk.group, gvk.version)
        found = self._by_kind.get(gvk)
        if found is None:
            raise NoKindMatchError(gvk)
        return found

    async def mapping_for_resource(self, gvr: GVR) -> RESTMapping:
        """The mapping for a resource (``GVR("apps", "v1", "deployments")``).

        Raises:
            NoKindMatchError: the server does not serve ``gvr``.
        """
        found = self._by_resource.get(gvr)
        if found is not None:
            return found
        await self._refresh(gvr.group, gvr.version)
        found = self._by_resource.get(gvr)
        if found is None:
            raise NoKindMatchError(gvr)
        return found

    async def is_namespaced(self, gvk: GVK) -> bool:
        """True when objects of ``gvk`` live in namespaces (raises :class:`NoKindMatchError` when unknown)."""
        return (await self.mapping(gvk)).namespaced

    async def _refresh(self, group: str, version: str) -> None:
        key = (group, version)
        pending = self._inflight.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        last = self._fetched_at.get(key)
        if last is not None and self._clock.now() - last < self._min_refresh:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            try:
                doc = await self._fetch(discovery_path(group, version))
            except NotFound:
                doc = {"resources": []}
            self._fetched_at[key] = self._clock.now()
            self._load(group, version, doc)
            fut.set_result(None)
        except BaseException as err:
            fut.set_exception(err)
            fut.exception()  # mark retrieved: waiters re-raise through shield, nobody else must
            raise
        finally:
            del self._inflight[key]

    def _load(self, group: str, version: str, doc: dict[str, Any]) -> None:
        resources = [r for r in doc.get("resources") or [] if isinstance(r, dict)]
        subs: dict[str, set[str]] = {}
        for r in resources:
            name = str(r.get("name", ""))
            if "/" in name:
                parent, _, sub = name.partition("/")
                subs.setdefault(parent, set()).add(sub)
        for r in resources:
            name = str(r.get("name", ""))
            kind = r.get("kind")
            if "/" in name or not kind:
                continue
            gvk = GVK(str(r.get("group") or group), str(r.get("version") or version), str(kind))
            gvr = GVR(gvk.group, gvk.version, name)
            self.register(
                RESTMapping(
                    gvk=gvk,
                    gvr=gvr,
                    namespaced=bool(r.get("namespaced", False)),
                    subresources=frozenset(subs.get(name, ())),
                    verbs=frozenset(str(v) for v in r.get("verbs") or ()),
                )
            )
