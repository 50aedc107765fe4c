"""Hypothesis: whatever a user (or a fuzzer) sends, the webhook answers with a clean allow or deny, never crashes,
and every denial names a field path."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaito.webhook import default_patch, validate_workspace
from tests.kaito.api.builders import inference_ws, tuning_ws

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "phi-3-mini-4k-instruct",
            "llama-2-7b",
            "Standard_NC6s_v3",
            "local-cpu",
            "lora",
            "qlora",
            "http://127.0.0.1/x",
            "https://example.com/x",
            "1.0",
            "nan",
            "",
            "private",
            "public",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "image",
                    "urls",
                    "volumeSource",
                    "strength",
                    "source",
                    "preset",
                    "count",
                    "instanceType",
                    "labelSelector",
                    "matchLabels",
                    "spec",
                    "x",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)

paths = st.sampled_from(
    [
        ("metadata", "name"),
        ("metadata", "annotations"),
        ("resource",),
        ("resource", "count"),
        ("resource", "instanceType"),
        ("resource", "labelSelector"),
        ("resource", "labelSelector", "matchExpressions"),
        ("resource", "preferredNodes"),
        ("inference",),
        ("inference", "preset"),
        ("inference", "preset", "name"),
        ("inference", "preset", "accessMode"),
        ("inference", "preset", "presetOptions"),
        ("inference", "template"),
        ("inference", "template", "spec"),
        ("inference", "template", "spec", "containers"),
        ("inference", "adapters"),
        ("tuning", "input", "volumeSource"),
        ("tuning", "output", "image"),
        ("inference", "adapters"),
        ("inference", "config"),
        ("tuning",),
        ("tuning", "method"),
        ("tuning", "input"),
        ("tuning", "input", "urls"),
        ("tuning", "output"),
        ("apiVersion",),
        ("kind",),
        ("status",),
    ]
)


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target: Any = obj
    for key in path[:-1]:
        if not isinstance(target, dict):
            return
        target = target.setdefault(key, {})
    if isinstance(target, dict):
        target[path[-1]] = value


@st.composite
def mutated_workspaces(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(st.sampled_from([inference_ws, tuning_ws]))()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        _set(obj, draw(paths), draw(json_values))
    return obj


def _assert_clean(obj: Any, old: Any = None) -> None:
    verdict = validate_workspace(obj, old)
    assert verdict.allowed == (not verdict.errors)
    for err in verdict.errors:
        assert isinstance(err.path, str) and isinstance(err.message, str) and err.message
        assert "internal error" not in err.message, err
    assert all(isinstance(w, str) for w in verdict.warnings)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_workspaces())
def test_mutated_workspaces_get_a_clean_verdict(obj: dict[str, Any]) -> None:
    _assert_clean(obj)
    default_patch(obj)


@settings(max_examples=100, deadline=None)
@given(mutated_workspaces(), mutated_workspaces())
def test_updates_between_arbitrary_workspaces_get_a_clean_verdict(new: dict[str, Any], old: dict[str, Any]) -> None:
    _assert_clean(new, old)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_arbitrary_json_gets_a_clean_verdict(obj: Any) -> None:
    _assert_clean(obj)
    assert not validate_workspace(obj).allowed or isinstance(obj, dict)
