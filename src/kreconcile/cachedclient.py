"""controller-runtime's default client: reads from the shared informer cache, writes to the API server.

A manager's ``client`` is a :class:`CachedClient`: ``get``/``list`` answer from memory (copies, so callers may
mutate them), which is what makes reconcilers cheap — a reconcile reads many objects and writes one — while
``create``/``update``/``patch``/``delete`` and the status writer go to the server. Reads may briefly lag the
server (until the watch event arrives); a write based on a stale read fails with ``Conflict`` and the reconcile is
retried, which is the controller-runtime contract. Use the manager's ``api_reader`` for a live read.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from kreconcile.cache import Cache
from kreconcile.client import Client, ObjectOrRef, PatchType, SubResourceClient, WatchEvent
from kreconcile.gvk import GVK
from kreconcile.labels import Selector
from kreconcile.restmapper import RESTMapping


class CachedClient:
    """controller-runtime's default client: reads (:meth:`get`, :meth:`list`) from the shared cache, writes go to
    the API server. Kinds in ``uncached`` are read live. Reads return copies; a read of a kind not cached yet
    starts its informer and waits for it to sync.

    :meth:`list` returns a list dict like :meth:`kreconcile.client.Client.list` (``items`` and
    ``metadata.resourceVersion``). Field selectors are answered from indexes: ``"spec.nodeName=n1"`` uses the
    index named ``spec.nodeName`` (add it with ``manager.cache.index_field``); ``metadata.name`` and
    ``metadata.namespace`` work without one.
    """

    def __init__(self, cache: Cache, api: Client, uncached: Sequence[GVK] = ()) -> None:
        self.cache = cache
        self.api = api
        self.uncached = frozenset(uncached)

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The object from the cache (a copy). Raises NotFound."""
        if gvk in self.uncached:
            return await self.api.get(gvk, name, namespace)
        return await self.cache.get(gvk, name, namespace)

    async def list(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, Any] | Selector | None = None,
        field_selector: str | None = None,
        index: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Matching objects from the cache as ``{"items": [...], ...}``.

        Raises:
            ValueError: a field selector other than ``key=value`` terms.
            KeyError: a field selector term without a matching index.
        """
        if gvk in self.uncached:
            if index is not None:
                raise ValueError(f"{gvk} is read uncached: index= needs the cache")
            return await self.api.list(gvk, namespace, label_selector=None if isinstance(label_selector, Selector)
                                       else label_selector, field_selector=field_selector)
        name_filter: str | None = None
        extra: builtins.list[tuple[str, str]] = []
        for term in (field_selector or "").split(","):
            if not term.strip():
                continue
            key, sep, value = term.partition("=")
            key, value = key.strip(), value.strip().lstrip("=")
            if not sep or key.endswith("!"):
                raise ValueError(f"field selector {field_selector!r}: the cache supports only 'key=value' terms")
            if key == "metadata.namespace":
                namespace = value
            elif key == "metadata.name":
                name_filter = value
            else:
                extra.append((key, value))
        if index is not None:
            extra.insert(0, index)
        items = await self.cache.list(
            gvk, namespace, label_selector=label_selector, index=extra[0] if extra else None
        )
        for key, value in extra[1:]:  # further index terms intersect
            keys = {(o["metadata"].get("namespace"), o["metadata"]["name"])
                    for o in await self.cache.list(gvk, namespace, index=(key, value))}
            items = [o for o in items if (o["metadata"].get("namespace"), o["metadata"]["name"]) in keys]
        if name_filter is not None:
            items = [o for o in items if o["metadata"].get("name") == name_filter]
        return {
            "apiVersion": gvk.api_version,
            "kind": f"{gvk.kind}List",
            "metadata": {},
            "items": items,
        }

    # writes and live-only calls go to the API server
    async def create(self, obj: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
        """See :meth:`kreconcile.client.Client.create`."""
        return await self.api.create(obj, **kw)

    async def update(self, obj: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
        """See :meth:`kreconcile.client.Client.update`."""
        return await self.api.update(obj, **kw)

    async def patch(self, obj: ObjectOrRef, patch: Any, patch_type: PatchType = "merge", **kw: Any) -> dict[str, Any]:
        """See :meth:`kreconcile.client.Client.patch`."""
        return await self.api.patch(obj, patch, patch_type, **kw)

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False) -> dict[str, Any]:
        """See :meth:`kreconcile.client.Client.apply`."""
        return await self.api.apply(obj, field_manager=field_manager, force=force)

    async def delete(self, obj: ObjectOrRef, **kw: Any) -> dict[str, Any] | None:
        """See :meth:`kreconcile.client.Client.delete`."""
        return await self.api.delete(obj, **kw)

    async def delete_all_of(self, gvk: GVK, namespace: str | None = None, **kw: Any) -> dict[str, Any] | None:
        """See :meth:`kreconcile.client.Client.delete_all_of`."""
        return await self.api.delete_all_of(gvk, namespace, **kw)

    def status(self) -> SubResourceClient:
        """See :meth:`kreconcile.client.Client.status`."""
        return self.api.status()

    def subresource(self, name: str) -> SubResourceClient:
        """See :meth:`kreconcile.client.Client.subresource`."""
        return self.api.subresource(name)

    def watch(self, gvk: GVK, namespace: str | None = None, **kw: Any) -> AsyncIterator[WatchEvent]:
        """A live watch (see :meth:`kreconcile.client.Client.watch`)."""
        return self.api.watch(gvk, namespace, **kw)

    async def get_log(self, name: str, namespace: str, **kw: Any) -> str:
        """A pod's log, live (see :meth:`kreconcile.client.Client.get_log`)."""
        return await self.api.get_log(name, namespace, **kw)

    async def mapping(self, gvk: GVK) -> RESTMapping:
        """The REST mapping of ``gvk`` (see :meth:`kreconcile.client.Client.mapping`)."""
        return await self.api.mapping(gvk)
