"""Hypothesis: every Workspace the webhook admits can be planned, and the plan honours what was admitted."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kaito.api import parse_workspace
from kaito.presets import load_catalog
from kaito.webhook import validate_workspace
from kaito.workloads import plan_workspace

CATALOG = load_catalog()
PRESETS = sorted(CATALOG.presets)
SKUS = sorted(CATALOG.skus)
TEMPLATES: list[Any] = [
    {"spec": {"containers": [{"name": "c", "image": "i"}]}},
    {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": []}},
    {"metadata": [], "spec": {"containers": [{"name": "c", "image": "i"}]}},
    {"spec": {"containers": [{"name": "c"}]}},
    {"spec": []},
]


@st.composite
def candidate_workspaces(draw: st.DrawFn) -> dict[str, Any]:
    tuning = draw(st.booleans())
    preset = draw(st.sampled_from(PRESETS))
    obj: dict[str, Any] = {
        "apiVersion": draw(st.sampled_from(["kaito.sh/v1alpha1", "kaito.sh/v1beta1"])),
        "kind": "Workspace",
        "metadata": {"name": "ws", "namespace": draw(st.sampled_from(["default", "team-a"]))},
        "resource": {
            "instanceType": draw(st.sampled_from(SKUS)),
            "count": draw(st.integers(min_value=1, max_value=4)),
            "labelSelector": {"matchLabels": {"apps": "x"}},
        },
    }
    if tuning:
        obj["tuning"] = {
            "preset": {"name": preset},
            "method": draw(st.sampled_from(["lora", "qlora"])),
            "input": {"urls": ["https://example.com/d.parquet"]},
            "output": {"volumeSource": {"emptyDir": {}}},
        }
    else:
        adapters = [
            {
                "source": {"name": f"a{i}", "image": f"reg.io/a{i}:1"},
                "strength": draw(st.sampled_from(["0", "0.5", "1.0"])),
            }
            for i in range(draw(st.integers(min_value=0, max_value=3)))
        ]
        obj["inference"] = {"preset": {"name": preset}, **({"adapters": adapters} if adapters else {})}
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            obj["inference"] = {"template": draw(st.sampled_from(TEMPLATES))}
    return obj


@settings(max_examples=80, deadline=None)
@given(candidate_workspaces())
def test_admitted_workspaces_plan_without_error(obj: dict[str, Any]) -> None:
    verdict = validate_workspace(obj)
    if not verdict.allowed:
        return
    ws = parse_workspace(obj)

    plan = plan_workspace(ws)

    assert plan.node_count >= (1 if ws.tuning else ws.resource.count)
    assert len(plan.nodeclaims) == plan.node_count
    kinds = [o["kind"] for o in plan.objects]
    assert kinds[-1] == ("Job" if ws.tuning else "StatefulSet")
    if plan.preset is not None and plan.preset.requires_gpu and plan.sku is not None:
        # rule 6 holds for every admitted workspace; inference also gets the estimator's GPUs (tuning is 1 node)
        assert plan.sku.gpu_memory_gib * plan.node_count >= plan.preset.weights_size_gib
        if ws.inference is not None and plan.estimate is not None:
            assert plan.gpus_per_node * plan.node_count >= plan.estimate.min_gpus
    for obj_ in plan.objects:
        assert obj_["metadata"]["namespace"] == ws.namespace


@settings(max_examples=60, deadline=None)
@given(candidate_workspaces())
def test_defaulting_patch_matches_the_models_defaults(obj: dict[str, Any]) -> None:
    import jsonpatch

    from kaito.webhook import default_patch

    patched = jsonpatch.apply_patch(obj, default_patch(obj))

    assert parse_workspace(patched) == parse_workspace(obj)
    assert default_patch(patched) == []  # idempotent
    assert validate_workspace(patched).allowed == validate_workspace(obj).allowed
