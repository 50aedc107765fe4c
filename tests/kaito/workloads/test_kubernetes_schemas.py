"""Every built-in object the builders produce is valid against the Kubernetes OpenAPI schemas (strict: no unknown
fields), checked offline with kubernetes-validate, so the API server will accept what the controllers create."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from kaito.api import parse_workspace
from kaito.workloads import plan_workspace
from tests.kaito.api.builders import ALL_EXAMPLES, DELETE, edit, inference_ws, load, tuning_ws

pytestmark = pytest.mark.slow  # loads the Kubernetes JSON schemas from disk (~10 s on a loaded machine)

K8S_VERSION = "1.30.0"
PRIVATE = {"image": "my.reg/phi4:1", "imagePullSecrets": ["s"]}

VARIANTS: dict[str, dict[str, Any]] = {
    **{f"{p.parent.name}/{p.name}": load(p) for p in ALL_EXAMPLES},
    "multi-node-70b": inference_ws(preset="llama-3.3-70b-instruct", count=3),
    "adapters-image-and-volume": edit(
        edit(inference_ws(), "metadata.uid", "3f1c"),
        "inference.adapters",
        [
            {"source": {"name": "a1", "image": "reg.io/a1:1", "imagePullSecrets": ["regcred"]}, "strength": "0.3"},
            {"source": {"name": "a2", "volumeSource": {"persistentVolumeClaim": {"claimName": "a2"}}}},
        ],
    ),
    "private-preset-lb": edit(
        edit(inference_ws(), "inference.preset", {"name": "phi-4", "accessMode": "private", "presetOptions": PRIVATE}),
        "metadata.annotations",
        {"kaito.sh/enablelb": "true"},
    ),
    "template": edit(
        edit(inference_ws(), "inference.preset", DELETE),
        "inference.template",
        {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    ),
    "tuning-image-in-volume-out": edit(
        edit(tuning_ws(), "tuning.input", {"image": "reg.io/data:1", "imagePullSecrets": ["pull"]}),
        "tuning.output",
        {"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}},
    ),
    "selector-expressions": edit(
        inference_ws(),
        "resource.labelSelector",
        {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "zone", "operator": "In", "values": ["1", "2"]},
                                                          {"key": "spot", "operator": "DoesNotExist"}]},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_built_objects_validate_against_kubernetes_schemas(name: str) -> None:
    plan = plan_workspace(parse_workspace(VARIANTS[name]), version="0.1.0")

    assert plan.objects
    for obj in plan.objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validator_catches_a_broken_object() -> None:
    plan = plan_workspace(parse_workspace(inference_ws()))
    sts = plan.objects[-1]
    sts["spec"]["template"]["spec"]["containers"][0]["portz"] = []

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)


def test_example_paths_exist() -> None:
    assert all(Path(p).exists() for p in ALL_EXAMPLES)
