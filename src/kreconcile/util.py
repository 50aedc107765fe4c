"""Helpers over objects: fast copies, JSON merge-patch diffs, and controller-runtime's ``CreateOrUpdate`` /
``CreateOrPatch`` (``controllerutil``), which write only when the mutate function changed something.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from kreconcile.errors import NotFound
from kreconcile.gvk import GVK


class _StatusWriter(Protocol):
    async def patch(self, obj: Any, patch: Any, patch_type: Any = "merge") -> dict[str, Any]: ...


class ObjectClient(Protocol):
    """The calls :func:`create_or_update` / :func:`create_or_patch` make; :class:`kreconcile.client.Client` and the
    manager's cached client (:class:`kreconcile.cachedclient.CachedClient`) both satisfy it."""

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]: ...

    async def create(self, obj: Any) -> dict[str, Any]: ...

    async def update(self, obj: Any) -> dict[str, Any]: ...

    async def patch(self, obj: Any, patch: Any, patch_type: Any = "merge") -> dict[str, Any]: ...

    def status(self) -> Any: ...


def deep_copy(obj: Any) -> Any:
    """A deep copy of a JSON-shaped value (dicts, lists, str, numbers, bools, None), several times faster than
    ``copy.deepcopy``. Other types (tuples, objects) are shared, not copied."""
    if isinstance(obj, dict):
        return {k: (deep_copy(v) if isinstance(v, dict | list) else v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [deep_copy(v) if isinstance(v, dict | list) else v for v in obj]
    return obj


def merge_patch_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 JSON merge patch that turns ``before`` into ``after``: changed or added keys with their new
    value, removed keys as ``None``, nested dicts diffed recursively, lists replaced whole. ``{}`` when equal."""
    patch: dict[str, Any] = {}
    for key, old in before.items():
        if key not in after:
            patch[key] = None
            continue
        new = after[key]
        if isinstance(old, dict) and isinstance(new, dict):
            sub = merge_patch_diff(old, new)
            if sub:
                patch[key] = sub
        elif old != new or type(old) is not type(new):
            patch[key] = deep_copy(new)
    for key, new in after.items():
        if key not in before:
            patch[key] = deep_copy(new)
    return patch


class OperationResult(enum.StrEnum):
    """What :func:`create_or_update` / :func:`create_or_patch` did (controller-runtime's ``OperationResult``)."""

    UNCHANGED = "unchanged"
    CREATED = "created"
    UPDATED = "updated"
    UPDATED_STATUS = "updatedStatus"
    """The object and its status subresource were both patched."""
    UPDATED_STATUS_ONLY = "updatedStatusOnly"
    """Only the status subresource was patched."""


MutateFn = Callable[[dict[str, Any]], Awaitable[None] | None]
"""Edits the object in place toward the desired state (sync or async). It sees the live object (or the template
when creating) and must not change ``metadata.name`` or ``metadata.namespace``."""


async def _mutate(fn: MutateFn, obj: dict[str, Any], name: Any, namespace: Any) -> None:
    result = fn(obj)
    if inspect.isawaitable(result):
        await result
    meta = obj.get("metadata") or {}
    if meta.get("name") != name or (meta.get("namespace") or None) != (namespace or None):
        raise ValueError(
            f"mutate function changed metadata.name/namespace from {namespace}/{name} to "
            f"{meta.get('namespace')}/{meta.get('name')}; it must only change the desired fields"
        )


def _key(obj: Mapping[str, Any]) -> tuple[Any, Any]:
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        raise ValueError("create_or_update/create_or_patch: the template needs metadata.name")
    return meta["name"], meta.get("namespace") or None


def _replace_in_place(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    target.clear()
    target.update(source)


async def create_or_update(client: ObjectClient, obj: dict[str, Any], mutate_fn: MutateFn) -> OperationResult:
    """Make the object named by ``obj`` exist in the state ``mutate_fn`` produces, writing only if needed.

    Reads the live object (through ``client``, so a manager's cached client reads from the cache); if absent,
    applies ``mutate_fn`` to ``obj`` and creates it; otherwise applies ``mutate_fn`` to the live copy and sends an
    update (with its resourceVersion: a concurrent change raises :class:`~kreconcile.errors.Conflict`) only if it
    differs. On return ``obj`` holds the server's (or the cache's) copy.

    Returns:
        ``created``, ``updated`` or ``unchanged``.

    Raises:
        ValueError: ``obj`` lacks apiVersion/kind/metadata.name, or ``mutate_fn`` renamed it.
        ApiError: the read or write failed.
    """
    gvk = GVK.of(obj)
    name, namespace = _key(obj)
    try:
        live = await client.get(gvk, name, namespace)
    except NotFound:
        await _mutate(mutate_fn, obj, name, namespace)
        created = await client.create(obj)
        _replace_in_place(obj, created)
        return OperationResult.CREATED
    before = deep_copy(live)
    await _mutate(mutate_fn, live, name, namespace)
    if live == before:
        _replace_in_place(obj, live)
        return OperationResult.UNCHANGED
    updated = await client.update(live)
    _replace_in_place(obj, updated)
    return OperationResult.UPDATED


async def create_or_patch(client: ObjectClient, obj: dict[str, Any], mutate_fn: MutateFn) -> OperationResult:
    """Like :func:`create_or_update`, but writes JSON merge patches of only what changed: one for the object
    without ``status``, and one to the ``/status`` subresource when ``mutate_fn`` changed ``status``.

    Returns:
        ``created``, ``updated``, ``updatedStatus`` (both), ``updatedStatusOnly``, or ``unchanged``.
    """
    gvk = GVK.of(obj)
    name, namespace = _key(obj)
    try:
        live = await client.get(gvk, name, namespace)
    except NotFound:
        await _mutate(mutate_fn, obj, name, namespace)
        created = await client.create(obj)
        _replace_in_place(obj, created)
        return OperationResult.CREATED
    before = deep_copy(live)
    await _mutate(mutate_fn, live, name, namespace)
    before_status, after_status = before.pop("status", None), live.get("status")
    after_main = {k: v for k, v in live.items() if k != "status"}
    main_patch = merge_patch_diff(before, after_main)
    result: dict[str, Any] | None = None
    if main_patch:
        result = await client.patch(live, main_patch, "merge")
    status_patch = merge_patch_diff({"status": before_status or {}}, {"status": after_status or {}})
    if status_patch:
        writer: _StatusWriter = client.status()
        result = await writer.patch(live, status_patch, "merge")
    _replace_in_place(obj, result if result is not None else live)
    if main_patch and status_patch:
        return OperationResult.UPDATED_STATUS
    if status_patch:
        return OperationResult.UPDATED_STATUS_ONLY
    if main_patch:
        return OperationResult.UPDATED
    return OperationResult.UNCHANGED
