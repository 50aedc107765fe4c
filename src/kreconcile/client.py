"""An async client for any kind the API server serves; objects are plain dicts in their wire (JSON) shape.

The wire is one aiohttp session per client, set up by :meth:`RestConfig.connect
<kreconcile.config.RestConfig.connect>` (kubeconfig, in-cluster or explicit credentials; see
:mod:`kreconcile.connection`). kubernetes-asyncio's generated APIs are not used — importing them costs ~40 MiB of
RSS — but an existing kubernetes-asyncio ``ApiClient`` may be passed in, and then its session and credentials are
used. Every request names its ``Content-Type`` explicitly, so a dict is never sent as a JSON Patch by accident
(kubernetes-asyncio's ``CustomObjectsApi.patch_*`` does that), and kinds are resolved through the discovery-backed
:class:`~kreconcile.restmapper.RESTMapper`, so custom resources work the same as built-ins.

Every request passes a client-side token bucket (:attr:`RestConfig.qps`/``burst``, 20/30 by default), is
counted in ``rest_client_requests_total{code,method,host}``, and is retried (up to ``max_retries`` times, 10 as in
client-go) when the server answers 429 or 5xx with a ``Retry-After`` header, after waiting that long (see
:mod:`kreconcile.transport`). Failures raise the typed errors of :mod:`kreconcile.errors`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import aiohttp

from kreconcile.clock import Clock
from kreconcile.config import RestConfig
from kreconcile.connection import Connection
from kreconcile.errors import ApiError, Expired, UnsupportedMediaType, from_response
from kreconcile.gvk import GVK
from kreconcile.restmapper import RESTMapper, RESTMapping
from kreconcile.transport import TokenBucket, Transport

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

PatchType = Literal["merge", "json", "strategic", "apply"]
"""``merge``: RFC 7386 JSON merge patch (a dict); ``json``: RFC 6902 JSON Patch (a list of operations);
``strategic``: strategic merge patch (built-in kinds only, lists merged by key); ``apply``: server-side apply
(the full desired object, needs ``field_manager``)."""

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
"""The ``Content-Type`` sent for each patch type (the API server picks the patch algorithm from it)."""

WatchEvent = tuple[str, dict[str, Any]]
"""``(type, object)`` with type ``ADDED``, ``MODIFIED``, ``DELETED`` or ``BOOKMARK``."""


class Ref(NamedTuple):
    """Names an object without having it: ``Ref(GVK("apps", "v1", "Deployment"), "web", "default")``."""

    gvk: GVK
    name: str
    namespace: str | None = None


ObjectOrRef = Mapping[str, Any] | Ref


def locate(obj: ObjectOrRef) -> Ref:
    """The :class:`Ref` of an object dict (from ``apiVersion``, ``kind``, ``metadata.name/namespace``) or a Ref.

    Raises:
        ValueError: ``apiVersion``/``kind`` or ``metadata.name`` missing.
    """
    if isinstance(obj, Ref):
        return obj
    gvk = GVK.of(dict(obj))
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError(f"{gvk.kind}: metadata.name is required to address an existing object; set it")
    return Ref(gvk, str(name), meta.get("namespace") or None)


class Client:
    """Talks to one API server. Create it with a :class:`RestConfig` (connected on first use) or an existing
    kubernetes-asyncio ``ApiClient`` (its session and credentials are reused; ``qps``/``burst`` are then the
    RestConfig defaults).

    Args:
        config: where the server is.
        mapper: a RESTMapper to share; by default one backed by this client's discovery requests.
        clock: for throttling and Retry-After waits.
        max_retries: how often a 429/5xx answer with ``Retry-After`` is retried (client-go: 10).
        max_retry_after: cap on one Retry-After wait in seconds.

    Call :meth:`close` (or use ``async with``) to release the connection pool.
    """

    def __init__(
        self,
        config: RestConfig | ApiClient,
        *,
        mapper: RESTMapper | None = None,
        clock: Clock | None = None,
        max_retries: int = 10,
        max_retry_after: float = 30.0,
    ) -> None:
        self.transport = Transport(config, clock=clock, max_retries=max_retries, max_retry_after=max_retry_after)
        self.config: RestConfig = self.transport.config
        self.mapper = mapper or RESTMapper(self._discovery_get, clock=clock)
        self._timeout = aiohttp.ClientTimeout(total=self.config.timeout)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool (unless it belongs to an ``ApiClient`` passed in)."""
        await self.transport.close()

    @property
    def rate_limiter(self) -> TokenBucket:
        """The client-side token bucket every request passes."""
        return self.transport.rate_limiter

    @property
    def connection(self) -> Connection | None:
        """The resolved connection (URL, TLS, proxy, auth) once the first request has been made."""
        return self.transport.connection

    @property
    def proxy(self) -> str | None:
        """The HTTP proxy requests go through (kubeconfig ``proxy-url`` or the environment), or None."""
        return self.transport.proxy

    @property
    def proxy_headers(self) -> dict[str, str] | None:
        """``Proxy-Authorization`` for the proxy (from credentials in the environment's proxy URL), or None."""
        return self.transport.proxy_headers

    async def connect(self) -> Connection:
        """Resolve credentials and open the session now instead of on the first request (optional).

        Raises:
            ConfigError: the credentials could not be loaded.
        """
        return await self.transport.connect()

    async def api_client(self) -> ApiClient:
        """A kubernetes-asyncio ``ApiClient`` for the same server (the one passed in, or a new one with its own
        connection pool, closed with this client), for code that wants kubernetes-asyncio's generated APIs."""
        return await self.transport.api_client()

    async def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        return await self.transport.send(method, path, query, body, content_type, timeout)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send a request to ``path`` (e.g. ``/api/v1/namespaces``) and return the decoded JSON body (None when
        empty). Use the typed methods below for objects; this is for paths they do not cover."""
        resp = await self._send(method, path, list(query or ()), body, content_type, self._timeout)
        try:
            data = await resp.read()
        finally:
            resp.release()
        if not data:
            return None
        if "json" not in (resp.content_type or "json"):
            return data.decode("utf-8", "replace")
        return json.loads(data)

    async def _discovery_get(self, path: str) -> dict[str, Any]:
        result = await self.request("GET", path)
        return result if isinstance(result, dict) else {}

    async def mapping(self, gvk: GVK) -> RESTMapping:
        """The REST mapping of ``gvk`` (raises :class:`~kreconcile.errors.NoKindMatchError` when not served)."""
        return await self.mapper.mapping(gvk)

    async def _path(
        self, gvk: GVK, namespace: str | None, name: str | None = None, subresource: str | None = None,
        *, need_namespace: bool = True,
    ) -> str:
        m = await self.mapper.mapping(gvk)
        if m.namespaced and not namespace and need_namespace:
            raise ValueError(f"{gvk.kind} is namespaced: metadata.namespace (or namespace=) is required; set it")
        return m.path(namespace, name, subresource)

    # ---------------------------------------------------------------- reads

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The object ``name`` (in ``namespace`` for namespaced kinds).

        Raises:
            NotFound: no such object. ValueError: namespace missing for a namespaced kind.
        """
        obj: dict[str, Any] = await self.request("GET", await self._path(gvk, namespace, name))
        return obj

    async def list(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """One page of objects: the server's list dict (``items``, ``metadata.resourceVersion``,
        ``metadata.continue`` when more pages remain). Every item gets ``apiVersion`` and ``kind`` filled in.

        ``namespace=None`` lists all namespaces. Selectors are strings (``"app=web,tier!=db"``) or dicts
        (``{"app": "web"}`` meaning equality on each key).

        Raises:
            Expired: ``continue_`` is older than the server keeps; list again without it.
        """
        path = await self._path(gvk, namespace, need_namespace=False)
        query = _selector_query(label_selector, field_selector)
        if limit:
            query.append(("limit", str(limit)))
        if continue_:
            query.append(("continue", continue_))
        if resource_version is not None:
            query.append(("resourceVersion", resource_version))
        result: dict[str, Any] = await self.request("GET", path, query=query)
        api_version, kind = gvk.api_version, gvk.kind
        for item in result.get("items") or ():
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return result

    async def list_all(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        page_size: int = 500,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Every object, following ``continue`` tokens (``page_size`` per request, client-go's pager default).
        Returns one list dict whose ``metadata.resourceVersion`` is the snapshot's. If a continue token expires
        mid-way, lists again in one unpaginated request (client-go's pager does the same).

        ``resource_version="0"`` lets the server answer from its watch cache (cheaper, possibly slightly stale:
        what informers use for their first list); None (default) asks for a consistent, current list. It is sent
        with the first page only (continue tokens carry their own snapshot)."""
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            try:
                page = await self.list(
                    gvk, namespace, label_selector=label_selector, field_selector=field_selector,
                    limit=page_size, continue_=cont, resource_version=None if cont else resource_version,
                )
            except Expired:
                if cont is None:
                    raise
                return await self.list(gvk, namespace, label_selector=label_selector, field_selector=field_selector)
            items.extend(page.get("items") or ())
            cont = (page.get("metadata") or {}).get("continue") or None
            if not cont:
                page["items"] = items
                page.setdefault("metadata", {}).pop("continue", None)
                return page

    async def watch(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """Stream changes as ``(type, object)`` pairs until the server ends the watch (``timeout_seconds``); the
        iterator then simply ends.

        Raises:
            aiohttp.ClientError: the connection dropped mid-stream (watch again from the last resourceVersion).
            Expired: ``resource_version`` is too old (from the request or an ERROR event); relist.
            ApiError: any other ERROR event or failed request.
        """
        path = await self._path(gvk, namespace, need_namespace=False)
        query = _selector_query(label_selector, field_selector)
        query.append(("watch", "true"))
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if allow_bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        if timeout_seconds:
            query.append(("timeoutSeconds", str(int(timeout_seconds))))
        read_timeout = (timeout_seconds or 600) + 30.0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=read_timeout)
        resp = await self._send("GET", path, query, None, "application/json", timeout)
        try:
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                etype = event.get("type")
                obj = event.get("object") or {}
                if etype == "ERROR":
                    raise from_response(int(obj.get("code") or 500), obj)
                yield str(etype), obj
        finally:
            resp.release()

    async def get_log(
        self, name: str, namespace: str, *, container: str | None = None, tail_lines: int | None = None,
        previous: bool = False,
    ) -> str:
        """The log text of pod ``name`` (``/api/v1/namespaces/{ns}/pods/{name}/log``)."""
        query: list[tuple[str, str]] = []
        if container:
            query.append(("container", container))
        if tail_lines is not None:
            query.append(("tailLines", str(tail_lines)))
        if previous:
            query.append(("previous", "true"))
        result = await self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log", query=query)
        if result is None:
            return ""
        return result if isinstance(result, str) else json.dumps(result)

    # ---------------------------------------------------------------- writes

    async def create(
        self, obj: Mapping[str, Any], *, field_manager: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Create ``obj`` (``metadata.name`` or ``metadata.generateName`` set) and return the server's copy.

        Raises:
            AlreadyExists: the name is taken. Invalid: validation failed (see ``causes``).
        """
        gvk = GVK.of(dict(obj))
        meta = obj.get("metadata") or {}
        if not meta.get("name") and not meta.get("generateName"):
            raise ValueError(f"{gvk.kind}: set metadata.name or metadata.generateName before create")
        path = await self._path(gvk, meta.get("namespace"))
        created: dict[str, Any] = await self.request(
            "POST", path, query=_write_query(field_manager, dry_run), body=dict(obj)
        )
        return created

    async def update(
        self, obj: Mapping[str, Any], *, field_manager: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Replace ``obj`` (PUT). ``metadata.resourceVersion`` is sent as given, so a stale copy fails.

        Raises:
            Conflict: the object changed since ``obj`` was read; get it again and reapply your change.
            NotFound: it no longer exists.
        """
        ref = locate(obj)
        path = await self._path(ref.gvk, ref.namespace, ref.name)
        updated: dict[str, Any] = await self.request(
            "PUT", path, query=_write_query(field_manager, dry_run), body=dict(obj)
        )
        return updated

    async def patch(
        self,
        obj: ObjectOrRef,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        patch_type: PatchType = "merge",
        *,
        field_manager: str | None = None,
        force: bool | None = None,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch the object named by ``obj`` with ``patch`` and return the result.

        Raises:
            ValueError: the body shape does not fit ``patch_type`` (json needs a list, the others a dict), or
                ``apply`` without ``field_manager``.
            UnsupportedMediaType: the server rejects this patch type for the resource (strategic on a custom
                resource, or apply where server-side apply is unavailable).
            Conflict: the patch carried a stale ``metadata.resourceVersion``.
        """
        ref = locate(obj)
        content_type = PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(f"patch_type {patch_type!r} is not one of {sorted(PATCH_CONTENT_TYPES)}")
        if patch_type == "json":
            if isinstance(patch, Mapping) or not isinstance(patch, Sequence):
                raise ValueError("patch_type='json' needs a list of RFC 6902 operations ([{'op': ..., 'path': ...}])")
            body: Any = [dict(op) for op in patch]
        else:
            if not isinstance(patch, Mapping):
                raise ValueError(f"patch_type={patch_type!r} needs a dict body (use patch_type='json' for a list)")
            body = dict(patch)
        if patch_type == "apply" and not field_manager:
            raise ValueError("patch_type='apply' (server-side apply) needs field_manager=, e.g. the controller name")
        query = _write_query(field_manager, dry_run)
        if force is not None and patch_type == "apply":
            query.append(("force", "true" if force else "false"))
        path = await self._path(ref.gvk, ref.namespace, ref.name, subresource)
        try:
            result: dict[str, Any] = await self.request(
                "PATCH", path, query=query, body=body, content_type=content_type
            )
        except UnsupportedMediaType as err:
            err.args = (
                f"{err.args[0]} — the server does not accept {patch_type!r} patches ({content_type}) for "
                f"{ref.gvk}; use patch_type='merge' (or 'json') instead",
            )
            raise
        return result

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False) -> dict[str, Any]:
        """Server-side apply ``obj`` (the fields this manager wants to own) and return the result."""
        return await self.patch(obj, obj, "apply", field_manager=field_manager, force=force)

    async def delete(
        self,
        obj: ObjectOrRef,
        *,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] | None = None,
        preconditions: Mapping[str, str] | None = None,
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any] | None:
        """Delete the object. Returns the server's answer: the object (still present while finalizers run) or a
        Status.

        Args:
            propagation_policy: how dependents are garbage-collected (server default: Background).
            preconditions: ``{"uid": ...}`` and/or ``{"resourceVersion": ...}`` the object must still have.

        Raises:
            NotFound: already gone (wrap in :func:`~kreconcile.errors.ignore_not_found` to ignore).
            Conflict: a precondition failed.
        """
        ref = locate(obj)
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if preconditions:
            options["preconditions"] = dict(preconditions)
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if dry_run:
            options["dryRun"] = ["All"]
        path = await self._path(ref.gvk, ref.namespace, ref.name)
        result: dict[str, Any] | None = await self.request("DELETE", path, body=options)
        return result

    async def delete_all_of(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] | None = None,
    ) -> dict[str, Any] | None:
        """Delete every matching object of ``gvk`` in ``namespace`` (DELETE on the collection)."""
        path = await self._path(gvk, namespace)
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        result: dict[str, Any] | None = await self.request(
            "DELETE", path, query=_selector_query(label_selector, field_selector), body=options
        )
        return result

    def status(self) -> SubResourceClient:
        """A writer for the ``/status`` subresource (controller-runtime's ``client.Status()``)."""
        return SubResourceClient(self, "status")

    def subresource(self, name: str) -> SubResourceClient:
        """A client for any subresource (``"scale"``, ``"status"``, ...)."""
        return SubResourceClient(self, name)


class SubResourceClient:
    """Reads and writes one subresource of objects (``/status``, ``/scale``). Writes to ``/status`` change only
    ``.status`` and do not bump ``metadata.generation``."""

    def __init__(self, client: Client, subresource: str) -> None:
        self._client = client
        self.subresource = subresource

    async def get(self, obj: ObjectOrRef) -> dict[str, Any]:
        """GET the subresource of the object."""
        ref = locate(obj)
        path = await self._client._path(ref.gvk, ref.namespace, ref.name, self.subresource)
        result: dict[str, Any] = await self._client.request("GET", path)
        return result

    async def update(self, obj: Mapping[str, Any], *, field_manager: str | None = None) -> dict[str, Any]:
        """PUT ``obj`` to the subresource (``metadata.resourceVersion`` is checked → Conflict when stale)."""
        ref = locate(obj)
        path = await self._client._path(ref.gvk, ref.namespace, ref.name, self.subresource)
        result: dict[str, Any] = await self._client.request(
            "PUT", path, query=_write_query(field_manager, False), body=dict(obj)
        )
        return result

    async def patch(
        self,
        obj: ObjectOrRef,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        patch_type: PatchType = "merge",
        *,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> dict[str, Any]:
        """PATCH the subresource; same rules as :meth:`Client.patch`."""
        return await self._client.patch(
            obj, patch, patch_type, field_manager=field_manager, force=force, subresource=self.subresource
        )


def selector_string(selector: str | Mapping[str, str] | None) -> str | None:
    """A label/field selector in the wire form: strings pass through, dicts become ``k=v,k2=v2``."""
    if selector is None:
        return None
    if isinstance(selector, str):
        return selector or None
    return ",".join(f"{k}={v}" for k, v in selector.items()) or None


def _selector_query(
    label_selector: str | Mapping[str, str] | None, field_selector: str | Mapping[str, str] | None
) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    ls, fs = selector_string(label_selector), selector_string(field_selector)
    if ls:
        query.append(("labelSelector", ls))
    if fs:
        query.append(("fieldSelector", fs))
    return query


def _write_query(field_manager: str | None, dry_run: bool) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if field_manager:
        query.append(("fieldManager", field_manager))
    if dry_run:
        query.append(("dryRun", "All"))
    return query


__all__ = [
    "PATCH_CONTENT_TYPES",
    "ApiError",
    "Client",
    "ObjectOrRef",
    "PatchType",
    "Ref",
    "SubResourceClient",
    "TokenBucket",
    "WatchEvent",
    "locate",
    "selector_string",
]
