"""Finalizer helpers report whether they changed the object."""

from __future__ import annotations

from typing import Any

import pytest

from kreconcile.finalizers import add_finalizer, has_finalizer, is_being_deleted, remove_finalizer

FIN = "kaito.sh/workspace-cleanup"


def test_add_and_remove_report_changes_and_keep_other_finalizers() -> None:
    obj: dict[str, Any] = {"metadata": {"name": "w"}}
    assert not has_finalizer(obj, FIN)
    assert add_finalizer(obj, FIN)
    assert not add_finalizer(obj, FIN)
    add_finalizer(obj, "other.io/x")
    assert obj["metadata"]["finalizers"] == [FIN, "other.io/x"]
    assert has_finalizer(obj, FIN)
    assert remove_finalizer(obj, FIN)
    assert not remove_finalizer(obj, FIN)
    assert obj["metadata"]["finalizers"] == ["other.io/x"]


def test_object_without_metadata_and_deletion_state() -> None:
    obj: dict[str, Any] = {}
    assert not remove_finalizer(obj, FIN)
    assert obj == {}
    assert add_finalizer(obj, FIN) and obj["metadata"]["finalizers"] == [FIN]
    assert not is_being_deleted(obj)
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert is_being_deleted(obj)


def test_bad_finalizer_names_are_refused() -> None:
    with pytest.raises(ValueError, match="finalizer name"):
        add_finalizer({}, "")
    with pytest.raises(ValueError, match="finalizer name"):
        add_finalizer({}, "has space")
