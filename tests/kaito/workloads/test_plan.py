"""plan_workspace: node counts, NodeClaims, BYO, and the objects for each seed example."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaito.api import parse_workspace
from kaito.presets import load_catalog
from kaito.workloads import PlanError, build_nodeclaim, nodeclaim_name, plan_workspace, storage_gib
from tests.kaito.api.builders import ALL_EXAMPLES, SEED_EXAMPLES, edit, inference_ws, load, tuning_ws


def _kinds(objs: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs]


def test_seed_inference_plan() -> None:
    plan = plan_workspace(parse_workspace(load(SEED_EXAMPLES[0])), version="1.0.0")

    assert plan.preset is not None and plan.preset.name == "phi-3-mini-4k-instruct"
    assert plan.sku is not None and plan.sku.name == "Standard_NC6s_v3"
    assert (plan.node_count, plan.gpus_per_node, plan.provisioning) == (1, 1, "auto")
    assert _kinds(plan.nodeclaims) == ["NodeClaim/workspace-phi-3-mini-292eeeef-0"]
    assert _kinds(plan.objects) == [
        "Service/workspace-phi-3-mini",
        "ConfigMap/workspace-phi-3-mini-inference-config",
        "StatefulSet/workspace-phi-3-mini",
    ]


def test_seed_tuning_plan() -> None:
    plan = plan_workspace(parse_workspace(load(SEED_EXAMPLES[2])))

    assert plan.node_count == 1
    assert _kinds(plan.objects) == ["ConfigMap/workspace-phi-3-mini-tuning-config", "Job/workspace-phi-3-mini"]


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_plans_owned_objects_in_its_namespace(path: Path) -> None:
    plan = plan_workspace(parse_workspace(load(path)))

    assert plan.objects
    for obj in plan.objects:
        assert obj["metadata"]["namespace"] == "default"
        assert obj["metadata"]["labels"]["kaito.sh/workspace"] == load(path)["metadata"]["name"]


def test_estimator_raises_the_node_count_above_resource_count() -> None:
    plan = plan_workspace(parse_workspace(inference_ws(preset="llama-3.3-70b-instruct", count=2)))

    assert plan.node_count == 3 and len(plan.nodeclaims) == 3
    assert "Service/ws-headless" in _kinds(plan.objects)
    assert plan.notes == [
        "the estimator needs 3 node(s) of Standard_NC24ads_A100_v4 for llama-3.3-70b-instruct (resource.count is 2); "
        "kaito uses 3"
    ]


def test_resource_count_above_the_estimate_is_kept() -> None:
    plan = plan_workspace(parse_workspace(inference_ws(count=4)))

    assert plan.node_count == 4 and len(plan.nodeclaims) == 4
    assert plan.objects[-1]["spec"]["replicas"] == 4


def test_byo_creates_no_nodeclaims_and_reads_gpus_from_node_labels() -> None:
    ws = parse_workspace(inference_ws(instance_type=None))
    nodes = [{"metadata": {"name": "n1", "labels": {"nvidia.com/gpu.count": "2"}}}]

    plan = plan_workspace(ws, auto_provisioning=False, nodes=nodes)

    assert plan.provisioning == "byo" and plan.nodeclaims == []
    sts = plan.objects[-1]
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def test_unknown_tolerated_sku_is_still_provisioned_with_one_gpu_per_pod() -> None:
    plan = plan_workspace(parse_workspace(inference_ws(instance_type="Standard_NC8ads_B200_v9")))

    assert plan.gpus_per_node == 1
    assert plan.nodeclaims[0]["spec"]["requirements"][0]["values"] == ["Standard_NC8ads_B200_v9"]
    assert plan.nodeclaims[0]["spec"]["nodeClassRef"]["kind"] == "AKSNodeClass"


def test_unknown_preset_is_a_plan_error_naming_the_field() -> None:
    with pytest.raises(PlanError, match=r"^inference\.preset\.name: preset 'nope' is not supported"):
        plan_workspace(parse_workspace(edit(inference_ws(), "inference.preset.name", "nope")))


def test_tuning_is_always_one_node() -> None:
    plan = plan_workspace(parse_workspace(tuning_ws()))

    assert plan.node_count == 1 and len(plan.nodeclaims) == 1


def test_nodeclaim_names_are_deterministic_and_namespaced() -> None:
    assert nodeclaim_name("default", "ws", 0) == nodeclaim_name("default", "ws", 0)
    assert nodeclaim_name("default", "ws", 0) != nodeclaim_name("other", "ws", 0)
    assert nodeclaim_name("default", "ws", 0) != nodeclaim_name("default", "ws", 1)
    assert len(nodeclaim_name("default", "x" * 63, 12)) <= 63


def test_nodeclaim_shape() -> None:
    catalog = load_catalog()
    ws = parse_workspace(load(SEED_EXAMPLES[0]))

    claim = build_nodeclaim(ws, catalog.sku("Standard_NC6s_v3"), 0, catalog.preset("phi-3-mini-4k-instruct"))

    assert claim["apiVersion"] == "karpenter.sh/v1" and claim["kind"] == "NodeClaim"
    assert claim["metadata"]["labels"] == {
        "apps": "phi-3",
        "karpenter.sh/nodepool": "kaito",
        "kaito.sh/workspace": "workspace-phi-3-mini",
        "kaito.sh/workspacenamespace": "default",
    }
    assert claim["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true"}
    assert claim["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert claim["spec"]["requirements"][:2] == [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["Standard_NC6s_v3"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    assert claim["spec"]["resources"] == {"requests": {"storage": "100Gi"}}


def test_storage_grows_with_the_model() -> None:
    catalog = load_catalog()

    assert storage_gib(catalog.preset("phi-3-mini-4k-instruct")) == 100
    assert storage_gib(catalog.preset("llama-3.3-70b-instruct")) == 313  # ceil(2 x 131.42 + 50)
