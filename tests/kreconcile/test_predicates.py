"""Predicates: which updates reach the queue."""

from __future__ import annotations

from typing import Any

import pytest

from kreconcile.predicates import (
    AnnotationChanged,
    Funcs,
    GenerationChanged,
    LabelChanged,
    LabelSelector,
    ResourceVersionChanged,
    and_,
    new_predicate_funcs,
    not_,
    or_,
)


def obj(gen: int = 1, rv: str = "1", labels: dict[str, str] | None = None, ann: dict[str, str] | None = None,
        ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "o", "generation": gen, "resourceVersion": rv}
    if labels is not None:
        meta["labels"] = labels
    if ann is not None:
        meta["annotations"] = ann
    return {"metadata": meta}


def test_generation_changed_ignores_status_only_writes_but_passes_creates_and_deletes() -> None:
    p = GenerationChanged()
    assert not p.update(obj(1, "1"), obj(1, "2"))
    assert p.update(obj(1, "1"), obj(2, "2"))
    assert p.create(obj()) and p.delete(obj()) and p.generic(obj())


def test_resource_version_changed_drops_resyncs() -> None:
    p = ResourceVersionChanged()
    assert not p.update(obj(rv="5"), obj(rv="5"))
    assert p.update(obj(rv="5"), obj(rv="6"))


def test_label_and_annotation_changed() -> None:
    assert LabelChanged().update(obj(labels={"a": "1"}), obj(labels={"a": "2"}))
    assert not LabelChanged().update(obj(labels={}), obj())
    assert AnnotationChanged().update(obj(), obj(ann={"x": "y"}))
    assert not AnnotationChanged().update(obj(ann={"x": "y"}), obj(ann={"x": "y"}))


def test_label_selector_predicate_matches_the_new_object() -> None:
    p = LabelSelector({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                                            "values": ["db"]}]})
    assert p.create(obj(labels={"app": "web"}))
    assert not p.create(obj(labels={"app": "web", "tier": "db"}))
    assert p.update(obj(labels={}), obj(labels={"app": "web"}))
    assert not p.delete(obj())
    assert LabelSelector("app=web").create(obj(labels={"app": "web"}))


def test_and_or_not_combine_per_event_kind() -> None:
    gen, lab = GenerationChanged(), LabelChanged()
    label_only = (obj(1, labels={"a": "1"}), obj(1, labels={"a": "2"}))
    assert or_(gen, lab).update(*label_only)
    assert not and_(gen, lab).update(*label_only)
    assert not_(gen).update(*label_only)
    assert not not_(gen).create(obj())
    assert and_().update(*label_only) and not or_().update(*label_only)
    deny_deletes = Funcs(delete=lambda o: False)
    assert deny_deletes.create(obj()) and not deny_deletes.delete(obj())


def test_malformed_selector_is_refused() -> None:
    with pytest.raises(ValueError, match="operator"):
        LabelSelector({"matchExpressions": [{"key": "a", "operator": "Has"}]})


def test_new_predicate_funcs_filters_every_event_kind_on_the_object() -> None:
    in_kaito = new_predicate_funcs(lambda o: o["metadata"].get("namespace") == "kaito")
    kaito, other = {"metadata": {"namespace": "kaito"}}, {"metadata": {"namespace": "default"}}
    assert in_kaito.create(kaito) and not in_kaito.create(other)
    assert in_kaito.update(other, kaito) and not in_kaito.update(kaito, other)
    assert not in_kaito.delete(other) and in_kaito.generic(kaito)
