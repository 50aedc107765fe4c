"""Finalizers in ``metadata.finalizers`` (controller-runtime ``controllerutil.AddFinalizer``/``RemoveFinalizer``).

The functions edit a wire-shape object dict in place and return whether they changed it, so a reconciler writes
(``client.update``/``patch``) only when needed. Finalizer names should be domain-qualified
(``kaito.sh/workspace-cleanup``); the API server warns about unqualified ones.
"""

from __future__ import annotations

from typing import Any


def _finalizers(obj: dict[str, Any], create: bool) -> list[str] | None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        if not create:
            return None
        meta = obj["metadata"] = {}
    fins = meta.get("finalizers")
    if fins is None:
        if not create:
            return None
        fins = meta["finalizers"] = []
    if not isinstance(fins, list):
        raise ValueError(f"metadata.finalizers must be a list of strings, got {type(fins).__name__}")
    return fins


def _check(name: str) -> None:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"finalizer name must be a non-empty string without spaces (e.g. 'kaito.sh/cleanup'), "
                         f"got {name!r}")


def has_finalizer(obj: dict[str, Any], name: str) -> bool:
    """True if ``metadata.finalizers`` contains ``name``."""
    fins = _finalizers(obj, create=False)
    return bool(fins) and name in fins  # type: ignore[operator]


def add_finalizer(obj: dict[str, Any], name: str) -> bool:
    """Append ``name`` to ``metadata.finalizers`` unless present; True if added.

    Raises:
        ValueError: ``name`` is empty or contains whitespace, or ``metadata.finalizers`` is not a list.
    """
    _check(name)
    fins = _finalizers(obj, create=True)
    assert fins is not None
    if name in fins:
        return False
    fins.append(name)
    return True


def remove_finalizer(obj: dict[str, Any], name: str) -> bool:
    """Remove every occurrence of ``name`` from ``metadata.finalizers``; True if any was removed.

    Raises:
        ValueError: ``metadata.finalizers`` is not a list.
    """
    fins = _finalizers(obj, create=False)
    if not fins or name not in fins:
        return False
    fins[:] = [f for f in fins if f != name]
    return True


def is_being_deleted(obj: dict[str, Any]) -> bool:
    """True once ``metadata.deletionTimestamp`` is set (the object waits only for its finalizers)."""
    meta = obj.get("metadata") or {}
    return bool(meta.get("deletionTimestamp"))
