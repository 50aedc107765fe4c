"""What the webhook admits: the seed's examples, warnings that never block, updates, bring-your-own nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kaito.api import constants as c
from kaito.webhook import validate_workspace
from tests.kaito.api.builders import ALL_EXAMPLES, DELETE, edit, inference_ws, load, tuning_ws


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_seed_and_local_examples_are_admitted(path: Path) -> None:
    verdict = validate_workspace(load(path))

    assert verdict.allowed, verdict.message()


def test_seed_placeholder_push_secret_is_a_warning_not_an_error() -> None:
    verdict = validate_workspace(load(ALL_EXAMPLES[2]))

    assert verdict.allowed
    assert verdict.warnings == [
        "tuning.output.imagePushSecret: 'ACR_REGISTRY_SECRET_HERE' is not a valid Secret name; replace it with "
        "the name of an existing Secret"
    ]


def test_cpu_preset_needs_no_gpu_on_local_cpu() -> None:
    verdict = validate_workspace(inference_ws(preset="smollm2-135m-instruct", instance_type="local-cpu"))

    assert verdict.allowed and not verdict.warnings


def test_v1alpha1_defaults_instance_type_so_it_may_be_omitted() -> None:
    assert validate_workspace(inference_ws(instance_type=None, version="v1alpha1")).allowed
    assert not validate_workspace(inference_ws(instance_type=None, version="v1beta1")).allowed


def test_unknown_standard_n_sku_is_tolerated_with_a_warning() -> None:
    verdict = validate_workspace(inference_ws(instance_type="Standard_NC8ads_B200_v9"))

    assert verdict.allowed
    assert verdict.warnings[0].startswith("resource.instanceType 'Standard_NC8ads_B200_v9' is not in kaito's SKU")


def test_bypass_annotation_skips_the_gpu_memory_check() -> None:
    obj = edit(
        inference_ws(preset="llama-3.3-70b-instruct"),
        "metadata.annotations",
        {c.ANNOTATION_BYPASS_RESOURCE_CHECKS: "True"},
    )

    verdict = validate_workspace(obj)

    assert verdict.allowed
    assert verdict.warnings == ["kaito.sh/bypass-resource-checks is set: the GPU memory check is skipped"]


def test_enough_nodes_admit_a_70b_model_and_warn_when_the_estimator_wants_more() -> None:
    two = validate_workspace(inference_ws(preset="llama-3.3-70b-instruct", count=2))
    three = validate_workspace(inference_ws(preset="llama-3.3-70b-instruct", count=3))

    assert two.allowed and three.allowed
    assert any("kaito will provision 3, not resource.count=2" in w for w in two.warnings), two.warnings
    # the only warning left with enough nodes: the runtime serves from one node (multi-node is a documented gap)
    assert len(three.warnings) == 1 and three.warnings[0].startswith("resource.count: 3 nodes")


def test_gpu_memory_boundary_equal_total_is_enough() -> None:
    # phi-4-mini-instruct needs 7.15 GiB; a 16 GiB V100 is plenty, so check the exact boundary with count.
    ws = inference_ws(preset="phi-3-medium-4k-instruct", instance_type="Standard_NC6s_v3", count=2)  # 32 >= 26

    assert validate_workspace(ws).allowed
    assert not validate_workspace(edit(ws, "resource.count", 1)).allowed


def test_preferred_nodes_are_deprecated_but_admitted() -> None:
    ws = inference_ws(preferredNodes=["node-1"])

    verdict = validate_workspace(ws)

    assert verdict.allowed
    assert verdict.warnings == [
        "resource.preferredNodes is deprecated; label your nodes and select them with resource.labelSelector"
    ]


def test_public_access_with_image_warns_that_image_is_ignored() -> None:
    ws = edit(inference_ws(), "inference.preset.presetOptions", {"image": "my.reg/phi:1"})

    verdict = validate_workspace(ws)

    assert verdict.allowed
    assert "presetOptions.image is ignored with accessMode: public" in verdict.warnings[0]


def test_private_access_with_image_is_admitted() -> None:
    ws = edit(
        inference_ws(),
        "inference.preset",
        {
            "name": "phi-3-mini-4k-instruct",
            "accessMode": "private",
            "presetOptions": {"image": "my.reg/phi:1", "imagePullSecrets": ["s"]},
        },
    )
    assert validate_workspace(ws).allowed


def test_template_workspace_is_admitted() -> None:
    ws = edit(
        edit(inference_ws(), "inference.preset", DELETE),
        "inference.template",
        {"spec": {"containers": [{"name": "server", "image": "my.reg/server:1"}]}},
    )
    assert validate_workspace(ws).allowed


def test_ten_adapters_is_the_maximum() -> None:
    adapters = [{"source": {"name": f"a{i}", "image": "reg.io/a:1"}, "strength": "0.0"} for i in range(10)]
    assert validate_workspace(edit(inference_ws(), "inference.adapters", adapters)).allowed


@pytest.mark.parametrize("strength", ["0", "0.0", "1", "1.0", "0.25"])
def test_adapter_strength_boundaries_are_admitted(strength: str) -> None:
    ws = edit(inference_ws(), "inference.adapters", [{"source": {"name": "a", "image": "r/a:1"}, "strength": strength}])
    assert validate_workspace(ws).allowed


def test_deleting_workspace_is_never_blocked() -> None:
    ws = edit(inference_ws(preset="llama-2-7b"), "metadata.deletionTimestamp", "2026-01-01T00:00:00Z")
    assert validate_workspace(ws).allowed


@pytest.mark.parametrize(
    "source",
    [
        {"image": "reg.io/data:1"},
        {"volumeSource": {"persistentVolumeClaim": {"claimName": "data"}}},
        {"urls": ["https://huggingface.co/datasets/x/resolve/main/train.parquet", "http://8.8.8.8/x.csv"]},
    ],
)
def test_tuning_input_sources_are_admitted(source: dict[str, Any]) -> None:
    assert validate_workspace(edit(tuning_ws(), "tuning.input", source)).allowed


def test_tuning_volume_output_needs_no_push_secret() -> None:
    ws = edit(tuning_ws(), "tuning.output", {"volumeSource": {"emptyDir": {}}})
    assert validate_workspace(ws).allowed


def test_ssrf_guard_checks_resolved_addresses_when_given_a_resolver() -> None:
    ws = edit(tuning_ws(), "tuning.input.urls", ["https://data.internal.example/train.parquet"])

    assert validate_workspace(ws).allowed  # no resolver: no DNS, name allowed
    verdict = validate_workspace(ws, resolve=lambda host: ["192.168.1.20"])

    assert [(e.path, e.message) for e in verdict.errors] == [
        (
            "tuning.input.urls[0]",
            "'https://data.internal.example/train.parquet': host 'data.internal.example' resolves to 192.168.1.20, "
            "a private address; use a URL to a public host",
        )
    ]


# --- rule 8: updates -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("resource.count", 2),
        ("resource.instanceType", "Standard_NC48ads_A100_v4"),
        ("resource.labelSelector", {"matchLabels": {"apps": "other"}}),
        ("inference.preset", {"name": "phi-3-mini-128k-instruct"}),
    ],
)
def test_immutable_inference_fields_are_rejected_on_update(path: str, value: Any) -> None:
    old = inference_ws()

    verdict = validate_workspace(edit(old, path, value), old)

    assert [e.path for e in verdict.errors] == [path]
    assert verdict.errors[0].message.startswith("is immutable (was ")
    assert verdict.errors[0].message.endswith("delete and re-create the workspace to change it")


@pytest.mark.parametrize(
    ("path", "value"),
    [("tuning.preset", {"name": "phi-3-mini-128k-instruct"}), ("tuning.method", "lora"), ("tuning.input.name", "x")],
)
def test_immutable_tuning_fields_are_rejected_on_update(path: str, value: Any) -> None:
    old = tuning_ws()

    verdict = validate_workspace(edit(old, path, value), old)

    assert [e.path for e in verdict.errors] == [path]


def test_switching_inference_to_tuning_is_rejected_on_update() -> None:
    old = inference_ws()
    new = {**{k: v for k, v in old.items() if k != "inference"}, "tuning": tuning_ws()["tuning"]}

    verdict = validate_workspace(new, old)

    assert [(e.path, e.message) for e in verdict.errors] == [
        ("inference", "a workspace cannot switch between inference and tuning; create a new Workspace")
    ]


def test_mutable_fields_may_change_on_update() -> None:
    old = inference_ws()
    new = edit(
        edit(old, "inference.adapters", [{"source": {"name": "a", "image": "r/a:1"}}]), "metadata.labels", {"team": "x"}
    )
    assert validate_workspace(new, old).allowed


# --- rule 6, bring your own nodes ------------------------------------------------------------------------------
def _node(
    name: str, product: str = "NVIDIA-A100-SXM4-80GB", count: str = "1", memory: str = "81920", **labels: str
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "apps": "test",
                c.LABEL_GPU_PRODUCT: product,
                c.LABEL_GPU_COUNT: count,
                c.LABEL_GPU_MEMORY: memory,
                **labels,
            },
        }
    }


def test_byo_nodes_with_enough_gpu_memory_are_admitted() -> None:
    ws = inference_ws(instance_type=None)

    verdict = validate_workspace(ws, nodes=[_node("n1")], auto_provisioning=False)

    assert verdict.allowed, verdict.message()


def test_byo_nodes_must_have_uniform_gpus() -> None:
    nodes = [_node("n1"), _node("n2", product="Tesla-V100", memory="16384")]

    verdict = validate_workspace(inference_ws(instance_type=None), nodes=nodes, auto_provisioning=False)

    assert [e.path for e in verdict.errors] == ["resource.labelSelector"]
    assert verdict.errors[0].message.startswith("selects nodes with different GPUs (n1 (NVIDIA-A100-SXM4-80GB x1)")


def test_byo_nodes_with_too_little_gpu_memory_are_rejected() -> None:
    nodes = [_node("n1", product="Tesla-V100", memory="16384")]
    ws = inference_ws(preset="phi-3-medium-4k-instruct", instance_type=None)

    verdict = validate_workspace(ws, nodes=nodes, auto_provisioning=False)

    assert [(e.path, e.message) for e in verdict.errors] == [
        (
            "resource.count",
            "Insufficient total GPU memory: the selected Tesla-V100 nodes have 16 GiB each; phi-3-medium-4k-instruct "
            "needs 26 GiB. Select 2 node(s) and set resource.count to 2.",
        )
    ]


def test_byo_nodes_not_matching_the_selector_are_ignored() -> None:
    other = _node("n9", product="Tesla-V100", memory="16384")
    other["metadata"]["labels"]["apps"] = "someone-else"

    verdict = validate_workspace(inference_ws(instance_type=None), nodes=[_node("n1"), other], auto_provisioning=False)

    assert verdict.allowed


def test_match_expressions_with_auto_provisioning_warn_about_provisioned_labels() -> None:
    sel = {"matchLabels": {"apps": "x"}, "matchExpressions": [{"key": "zone", "operator": "Exists"}]}

    verdict = validate_workspace(edit(inference_ws(), "resource.labelSelector", sel))

    assert verdict.allowed
    assert verdict.warnings == [
        "resource.labelSelector.matchExpressions: nodes kaito provisions carry only the matchLabels; the "
        "expressions must hold for those labels too, or the pods will not schedule"
    ]


def test_byo_with_fewer_matching_nodes_than_count_warns() -> None:
    verdict = validate_workspace(
        inference_ws(instance_type=None, count=2), nodes=[_node("n1")], auto_provisioning=False
    )

    assert verdict.allowed
    assert verdict.warnings[1:] == [
        "resource.labelSelector selects 1 node(s) but resource.count is 2; the workspace waits until 2 "
        "matching nodes exist"
    ]
    assert verdict.warnings[0].startswith("resource.count: 2 nodes")  # serving is single-node (documented gap)


def test_a_52_character_name_is_admitted_and_a_longer_existing_one_can_still_be_updated() -> None:
    assert validate_workspace(edit(inference_ws(), "metadata.name", "w" * 52)).allowed
    # a Workspace created before the 52-character rule keeps working: finalizer removal and edits are not blocked
    old = edit(inference_ws(), "metadata.name", "w" * 60)
    new = edit(old, "metadata.labels", {"team": "a"})
    assert validate_workspace(new, old=old).allowed
    assert not validate_workspace(old).allowed


def test_several_nodes_for_a_preset_are_admitted_with_a_warning_about_single_node_serving() -> None:
    verdict = validate_workspace(edit(inference_ws(preset="smollm2-135m-instruct", instance_type="local-cpu"),
                                      "resource.count", 2))

    assert verdict.allowed
    assert any(w.startswith("resource.count: 2 nodes") and "rank" in w for w in verdict.warnings), verdict.warnings


def test_an_immutable_field_error_shows_the_values_as_json() -> None:
    old = inference_ws()

    verdict = validate_workspace(edit(old, "inference.preset", {"name": "phi-3-mini-128k-instruct"}), old)

    message = verdict.errors[0].message
    assert message.startswith('is immutable (was {"accessMode": "public", "name": "phi-3-mini-4k-instruct"}, now '
                              '{"accessMode": "public", "name": "phi-3-mini-128k-instruct"})'), message
