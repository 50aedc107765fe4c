"""Owner references: one controller per object, scope rules, idempotent updates."""

from __future__ import annotations

from typing import Any

import pytest

from kreconcile.gvk import GVK
from kreconcile.ownerrefs import (
    AlreadyOwnedError,
    get_controller_of,
    is_controlled_by,
    remove_owner_reference,
    set_controller_reference,
    set_owner_reference,
)


def ws(name: str = "w", uid: str = "u1", namespace: str | None = "ns") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": meta}


def child(namespace: str | None = "ns") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "c"}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta}


def test_set_controller_reference_adds_once_and_refuses_a_second_controller() -> None:
    obj = child()
    assert set_controller_reference(ws(), obj)
    assert obj["metadata"]["ownerReferences"] == [
        {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "name": "w", "uid": "u1", "controller": True,
         "blockOwnerDeletion": True}
    ]
    assert not set_controller_reference(ws(), obj)  # idempotent
    assert is_controlled_by(obj, ws()) and not is_controlled_by(obj, ws("other", "u2"))
    with pytest.raises(AlreadyOwnedError, match="already controlled by Workspace 'w'"):
        set_controller_reference(ws("other", "u2"), obj)
    assert get_controller_of(obj)["name"] == "w"  # type: ignore[index]


def test_same_owner_at_another_version_updates_the_reference_in_place() -> None:
    obj = child()
    set_controller_reference(ws(), obj)
    newer = ws()
    newer["apiVersion"] = "kaito.sh/v1alpha1"
    assert set_controller_reference(newer, obj)
    assert len(obj["metadata"]["ownerReferences"]) == 1
    assert obj["metadata"]["ownerReferences"][0]["apiVersion"] == "kaito.sh/v1alpha1"


def test_plain_owner_references_coexist_with_the_controller_and_can_be_removed() -> None:
    obj = child()
    set_controller_reference(ws(), obj)
    assert set_owner_reference(ws("second", "u2"), obj)
    assert not set_owner_reference(ws(), obj)  # keeps controller flag of the existing reference
    assert get_controller_of(obj)["name"] == "w"  # type: ignore[index]
    assert remove_owner_reference(GVK("kaito.sh", "v1beta1", "Workspace"), obj, "second")
    assert not remove_owner_reference(ws("second", "u2"), obj)
    assert [r["name"] for r in obj["metadata"]["ownerReferences"]] == ["w"]


def test_scope_rules_and_missing_uid() -> None:
    with pytest.raises(ValueError, match="cross-namespace"):
        set_controller_reference(ws(), child("other"))
    with pytest.raises(ValueError, match="cluster-scoped object"):
        set_controller_reference(ws(), child(None))
    assert set_controller_reference(ws(namespace=None), child())  # cluster-scoped owner may own namespaced objects
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        set_controller_reference(ws(uid=""), child())
