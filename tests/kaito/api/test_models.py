"""Workspace and NodeClaim models: the seed's shape parses, wire names round-trip, versions differ only where
documented, label selectors match like Kubernetes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kaito.api import (
    NodeClaim,
    WorkspaceV1alpha1,
    WorkspaceV1beta1,
    parse_workspace,
    selector_matches,
)
from tests.kaito.api.builders import ALL_EXAMPLES, SEED_EXAMPLES, inference_ws, load


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_parse_and_round_trip_to_the_same_wire_dict(path: Path) -> None:
    doc = load(path)

    ws = parse_workspace(doc)

    wire = ws.to_wire()
    for key in ("resource", "inference", "tuning"):
        if key in doc:
            # every field the user wrote comes back unchanged (defaults may be added)
            assert _contains(wire[key], doc[key]), key


def _contains(full: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(full, dict) and all(k in full and _contains(full[k], v) for k, v in part.items())
    return bool(full == part)


def test_seed_inference_example_fields_are_typed() -> None:
    ws = parse_workspace(load(SEED_EXAMPLES[0]))

    assert isinstance(ws, WorkspaceV1alpha1)
    assert ws.name == "workspace-phi-3-mini" and ws.namespace == "default"
    assert ws.resource.instance_type == "Standard_NC6s_v3"
    assert ws.resource.count == 1
    assert ws.resource.label_selector.match_labels == {"apps": "phi-3"}
    assert ws.inference is not None and ws.inference.preset is not None
    assert ws.inference.preset.name == "phi-3-mini-4k-instruct"
    assert ws.inference.preset.access_mode == "public"


def test_seed_tuning_example_fields_are_typed() -> None:
    ws = parse_workspace(load(SEED_EXAMPLES[2]))

    assert ws.tuning is not None and ws.tuning.input is not None and ws.tuning.output is not None
    assert ws.tuning.method == "qlora"
    assert ws.tuning.input.urls and ws.tuning.input.urls[0].startswith("https://huggingface.co/datasets/")
    assert ws.tuning.output.image_push_secret == "ACR_REGISTRY_SECRET_HERE"


def test_only_v1alpha1_defaults_the_instance_type() -> None:
    alpha = parse_workspace(inference_ws(instance_type=None, version="v1alpha1"))
    beta = parse_workspace(inference_ws(instance_type=None, version="v1beta1"))

    assert alpha.resource.instance_type == "Standard_NC24ads_A100_v4"
    assert beta.resource.instance_type is None


def test_v1beta1_status_has_state_and_target_node_count() -> None:
    obj = {
        **inference_ws(),
        "status": {
            "state": "Ready",
            "targetNodeCount": 2,
            "workerNodes": ["n1"],
            "conditions": [{"type": "ResourceReady", "status": "True", "reason": "R"}],
        },
    }

    ws = parse_workspace(obj)

    assert isinstance(ws, WorkspaceV1beta1) and ws.status is not None
    assert (ws.status.state, ws.status.target_node_count, ws.status.worker_nodes) == ("Ready", 2, ["n1"])
    with pytest.raises(ValidationError):
        parse_workspace({**inference_ws(version="v1alpha1"), "status": {"state": "Ready"}})


def test_snake_case_and_camel_case_are_both_accepted_and_wire_is_camel_case() -> None:
    ws = WorkspaceV1beta1.model_validate(
        {
            "metadata": {"name": "x"},
            "resource": {"instance_type": "local-cpu", "label_selector": {"matchLabels": {"a": "b"}}},
        }
    )

    assert ws.to_wire()["resource"] == {
        "count": 1,
        "instanceType": "local-cpu",
        "labelSelector": {"matchLabels": {"a": "b"}},
    }


def test_unknown_api_version_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"use kaito.sh/v1beta1 or kaito.sh/v1alpha1"):
        parse_workspace({**inference_ws(), "apiVersion": "kaito.sh/v2"})


def test_metadata_keeps_server_fields() -> None:
    ws = parse_workspace(
        {**inference_ws(), "metadata": {"name": "x", "uid": "u1", "managedFields": [{"manager": "m"}]}}
    )

    assert ws.metadata.uid == "u1"
    assert ws.to_wire()["metadata"]["managedFields"] == [{"manager": "m"}]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {"a": "b"}, True),
        ({}, {}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "x"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]}, {"a": "y"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {"a": "x"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]}, {"a": "b"}, False),
    ],
)
def test_label_selector_semantics(selector: dict[str, Any] | None, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


def test_nodeclaim_model_reads_karpenter_status() -> None:
    claim = NodeClaim.model_validate(
        {
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": {"name": "ws-1"},
            "spec": {
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["Standard_NC6s_v3"]}
                ]
            },
            "status": {
                "providerID": "azure:///x",
                "nodeName": "aks-ws-1",
                "capacity": {"nvidia.com/gpu": "1"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )

    assert claim.status is not None and claim.status.provider_id == "azure:///x"
    assert claim.to_wire()["status"]["providerID"] == "azure:///x"


def test_nodeclaim_keeps_fields_of_karpenters_full_crd() -> None:
    claim = NodeClaim.model_validate(
        {
            "metadata": {"name": "ws-1"},
            "spec": {"requirements": [], "terminationGracePeriod": "1h"},
            "status": {"lastPodEventTime": "2026-01-01T00:00:00Z"},
        }
    )

    wire = claim.to_wire()
    assert wire["spec"]["terminationGracePeriod"] == "1h"
    assert wire["status"]["lastPodEventTime"] == "2026-01-01T00:00:00Z"
