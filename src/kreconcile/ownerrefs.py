"""Owner references in ``metadata.ownerReferences`` (controller-runtime ``controllerutil.SetControllerReference``).

An owner reference makes the garbage collector delete the object when its owner goes; the one reference with
``controller: true`` names the controller responsible for the object (``Builder.owns`` enqueues it). References
are matched by the owner's API group, kind and name (the version is ignored, as upstream). The functions edit
wire-shape dicts in place.
"""

from __future__ import annotations

from typing import Any

from kreconcile.gvk import GVK


class AlreadyOwnedError(ValueError):
    """The object already has a different controller owner; an object has at most one."""

    def __init__(self, obj: dict[str, Any], existing: dict[str, Any], owner: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.existing = existing
        super().__init__(
            f"{obj.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')} is already controlled "
            f"by {existing.get('kind')} {existing.get('name')!r}; cannot make {owner.get('kind')} "
            f"{(owner.get('metadata') or {}).get('name')!r} its controller (remove the other controller reference "
            f"first, or use set_owner_reference for a non-controller owner)"
        )


def _group(api_version: object) -> str:
    return str(api_version or "").rpartition("/")[0]


def _ref_for(owner: dict[str, Any]) -> dict[str, Any]:
    meta = owner.get("metadata") or {}
    missing = [f for f, v in (("apiVersion", owner.get("apiVersion")), ("kind", owner.get("kind")),
                              ("metadata.name", meta.get("name")), ("metadata.uid", meta.get("uid"))) if not v]
    if missing:
        raise ValueError(
            f"owner is missing {', '.join(missing)}; use the owner as read from the API server (it has a uid)"
        )
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"]}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _group(a.get("apiVersion")) == _group(b.get("apiVersion")) and a.get("kind") == b.get("kind") and a.get(
        "name"
    ) == b.get("name")


def _validate_scope(owner: dict[str, Any], obj: dict[str, Any]) -> None:
    owner_ns = (owner.get("metadata") or {}).get("namespace") or None
    obj_ns = (obj.get("metadata") or {}).get("namespace") or None
    if owner_ns is None:
        return  # a cluster-scoped owner may own anything
    if obj_ns is None:
        raise ValueError(
            f"cluster-scoped object {(obj.get('metadata') or {}).get('name')!r} cannot have namespaced owner "
            f"{owner.get('kind')} {owner_ns}/{(owner.get('metadata') or {}).get('name')}"
        )
    if owner_ns != obj_ns:
        raise ValueError(
            f"cross-namespace owner references are not allowed: owner is in namespace {owner_ns!r}, object in "
            f"{obj_ns!r}"
        )


def _upsert(obj: dict[str, Any], ref: dict[str, Any]) -> bool:
    refs: list[dict[str, Any]] = obj.setdefault("metadata", {}).setdefault("ownerReferences", [])
    for i, existing in enumerate(refs):
        if _same(existing, ref):
            if existing == ref:
                return False
            refs[i] = ref
            return True
    refs.append(ref)
    return True


def set_controller_reference(owner: dict[str, Any], obj: dict[str, Any], *, block_owner_deletion: bool = True) -> bool:
    """Make ``owner`` the controller of ``obj`` (``controller: true``, ``blockOwnerDeletion`` as given; default
    True as upstream); True if ``obj`` changed. An existing reference to the same owner is replaced.

    Raises:
        AlreadyOwnedError: another object is already ``obj``'s controller.
        ValueError: the owner lacks apiVersion/kind/name/uid, or the scopes do not allow ownership (namespaced
            owner of a cluster-scoped object, or different namespaces).
    """
    ref = _ref_for(owner)
    _validate_scope(owner, obj)
    current = get_controller_of(obj)
    if current is not None and not _same(current, ref):
        raise AlreadyOwnedError(obj, current, owner)
    ref["controller"] = True
    ref["blockOwnerDeletion"] = block_owner_deletion
    return _upsert(obj, ref)


def set_owner_reference(owner: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Add (or refresh) a non-controller owner reference to ``owner``; True if ``obj`` changed. An existing
    reference to the same owner keeps its ``controller``/``blockOwnerDeletion`` flags.

    Raises:
        ValueError: the owner lacks apiVersion/kind/name/uid, or the scopes do not allow ownership.
    """
    ref = _ref_for(owner)
    _validate_scope(owner, obj)
    for existing in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if _same(existing, ref):
            for flag in ("controller", "blockOwnerDeletion"):
                if flag in existing:
                    ref[flag] = existing[flag]
    return _upsert(obj, ref)


def remove_owner_reference(owner: dict[str, Any] | GVK, obj: dict[str, Any], name: str | None = None) -> bool:
    """Remove the reference to ``owner`` (an object, or a GVK plus ``name``); True if one was removed."""
    target: dict[str, Any]
    if isinstance(owner, GVK):
        if not name:
            raise ValueError("remove_owner_reference: pass the owner's name with a GVK")
        target = {"apiVersion": owner.api_version, "kind": owner.kind, "name": name}
    else:
        target = {"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind"),
                  "name": (owner.get("metadata") or {}).get("name")}
    meta = obj.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    kept = [r for r in refs if not _same(r, target)]
    if len(kept) == len(refs):
        return False
    meta["ownerReferences"] = kept
    return True


def get_controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The owner reference with ``controller: true``, or None."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return dict(ref)
    return None


def is_controlled_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    """True if ``obj``'s controller reference points at ``owner`` (same group, kind, name and uid)."""
    ref = get_controller_of(obj)
    if ref is None:
        return False
    meta = owner.get("metadata") or {}
    target = {"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind"), "name": meta.get("name")}
    return _same(ref, target) and (not meta.get("uid") or ref.get("uid") == meta.get("uid"))
