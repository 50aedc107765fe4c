"""Unit tests of the emulator's pure parts: selectors, patches, managed fields, JSONPath, durations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kreconcile.testing.apiserver.apply import from_fields_v1, leaves, to_fields_v1
from kreconcile.testing.apiserver.errors import APIError
from kreconcile.testing.apiserver.patch import merge_patch, strategic_merge
from kreconcile.testing.apiserver.resources import builtin_types
from kreconcile.testing.apiserver.selectors import labels_match, parse_field_selector, parse_label_selector
from kreconcile.testing.apiserver.table import find, human_duration

TYPES = {rt.kind: rt for rt in builtin_types()}


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("a=b", {"a": "b"}, True), ("a==b", {"a": "c"}, False), ("a!=b", {}, True), ("a in (x, y)", {"a": "y"}, True),
    ("a notin (x)", {}, True), ("a", {"a": ""}, True), ("!a", {"a": "1"}, False), ("n>3", {"n": "4"}, True),
    ("n<3", {"n": "x"}, False), ("a=b,c in (d),!e", {"a": "b", "c": "d"}, True),
])
def test_label_selector_semantics(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), {"metadata": {"labels": labels}}) is expected


@pytest.mark.parametrize("bad", ["a in (b", "=b", "a in ()", "a b", "n>x", "-a=b"])
def test_bad_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(APIError) as err:
        parse_label_selector(bad)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")


def test_field_selectors_are_limited_to_the_kind_fields() -> None:
    assert parse_field_selector("spec.nodeName=n,status.phase!=Failed", ("", "pods"))
    with pytest.raises(APIError) as err:
        parse_field_selector("spec.nodeName=n", ("", "configmaps"))
    assert "field label not supported: spec.nodeName" in err.value.message


def test_merge_patch_is_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3], "n": {"x": None}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3], "n": {}}


def test_strategic_merge_directives() -> None:
    spec = {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]}, {"name": "b"}],
            "tolerations": [{"key": "k"}]}
    patch = {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
             "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}],
             "tolerations": [{"key": "other"}]}
    out = strategic_merge("Pod", ("spec",), spec, patch)
    assert [c["name"] for c in out["containers"]] == ["b", "a"]
    assert out["containers"][1]["env"] == [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]
    assert out["tolerations"] == [{"key": "other"}]  # no merge key: replaced, as in k8s.io/api
    replaced = strategic_merge("Pod", ("spec",), spec, {"containers": [{"$patch": "replace"}, {"name": "c"}]})
    assert replaced["containers"] == [{"name": "c"}]
    merged = strategic_merge("Pod", (), {"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": ["b"]}})
    assert merged["metadata"]["finalizers"] == ["b", "a"]  # patch items first (normalizeElementOrder)
    deleted = strategic_merge("Pod", (), {"metadata": {"finalizers": ["a", "b"]}},
                              {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert deleted["metadata"]["finalizers"] == ["b"]


names = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=5)


@given(names, names)
def test_strategic_merge_of_containers_is_a_keyed_union(original: list[str], patched: list[str]) -> None:
    spec = {"containers": [{"name": n, "image": "old"} for n in original]}
    out = strategic_merge("Pod", ("spec",), spec, {"containers": [{"name": n, "image": "new"} for n in patched]})
    result = [c["name"] for c in out["containers"]]
    assert sorted(result) == sorted(set(original) | set(patched))
    assert [n for n in result if n in patched] == patched  # patch order kept
    assert [n for n in result if n not in patched] == [n for n in original if n not in patched]
    assert all(c["image"] == ("new" if c["name"] in patched else "old") for c in out["containers"])


def test_managed_field_paths_round_trip() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"},
                                                           "finalizers": ["x"]},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    paths = set(leaves(TYPES["Pod"], pod))
    assert ("f:metadata", "f:labels", "f:a") in paths
    assert ("f:spec", "f:containers", 'k:{"name":"c"}', "f:image") in paths
    assert ("f:metadata", "f:finalizers", 'v:"x"') in paths
    assert not any(p[:2] == ("f:metadata", "f:name") for p in paths)
    tree: dict[str, Any] = to_fields_v1(paths)
    assert tree["f:spec"]["f:containers"]['k:{"name":"c"}']["."] == {}
    assert from_fields_v1(tree) == paths


def test_jsonpath_for_printer_columns() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
           "metadata": {"labels": {"app.kubernetes.io/name": "x"}}, "spec": {"items": [{"n": 1}, {"n": 2}]}}
    assert find(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert find(obj, ".spec.items[*].n") == [1, 2]
    assert find(obj, ".spec.items[-1].n") == [2]
    assert find(obj, ".metadata.labels['app.kubernetes.io/name']") == ["x"]
    assert find(obj, ".metadata.labels.app\\.kubernetes\\.io/name") == ["x"]
    assert find(obj, ".missing.field") == []


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"),
                                               (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (3 * 86400, "3d"),
                                               (400 * 86400, "400d"), (3 * 365 * 86400, "3y")])
def test_human_duration_matches_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.slow
def test_builtin_field_table_is_current_with_kubernetes_asyncio() -> None:
    from kreconcile.testing.apiserver import builtin_schema

    assert builtin_schema.generate() == builtin_schema._table(), (
        "builtin_fields.json is stale: run .venv/bin/python -m kreconcile.testing.apiserver.builtin_schema")


def test_builtin_pruning_drops_undeclared_fields_at_any_depth() -> None:
    from kreconcile.testing.apiserver.builtin_schema import prune_builtin

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "bogus": 1},
                  "spec": {"replica": 2, "template": {"spec": {"containers": [{"name": "c", "imag": "x",
                                                                               "resources": {"limits": {"cpu": 1}}}]}}}}
    pruned = prune_builtin(TYPES["Deployment"], deployment)
    assert sorted(pruned) == ["metadata.bogus", "spec.replica", "spec.template.spec.containers[0].imag"]
    assert deployment["spec"]["template"]["spec"]["containers"][0] == {"name": "c", "resources": {"limits":
                                                                                                 {"cpu": 1}}}


def test_a_label_value_over_63_characters_is_invalid_for_its_length() -> None:
    from kreconcile.testing.apiserver.objects import validate_metadata

    long_value = "w" * 53 + "-6snmvtk6c2"  # what a 53-character StatefulSet's controller-revision-hash looks like
    pod = {"metadata": {"name": "p", "labels": {"controller-revision-hash": long_value}}}
    with pytest.raises(APIError) as err:
        validate_metadata(TYPES["Pod"], pod)
    assert err.value.code == 422
    causes = err.value.details["causes"] if err.value.details else []
    assert [c["message"] for c in causes] == [f'Invalid value: "{long_value}": must be no more than 63 characters']
    validate_metadata(TYPES["Pod"], {"metadata": {"name": "p", "labels": {"controller-revision-hash": "w" * 63}}})
