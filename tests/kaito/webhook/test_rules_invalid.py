# ruff: noqa: E501  (expected messages are asserted verbatim)
"""At least 40 invalid Workspaces, one rule (or boundary) each: the webhook denies each with exactly one error whose
field path and message are asserted verbatim, so a user always learns which field is wrong and how to fix it."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.webhook import validate_workspace
from tests.kaito.api.builders import DELETE, edit, inference_ws, tuning_ws

INF = inference_ws()
TUN = tuning_ws()
ADP = edit(INF, "inference.adapters", [{"source": {"name": "a1", "image": "reg.io/a:1"}, "strength": "0.5"}])
TEMPLATE = {"spec": {"containers": [{"name": "c", "image": "i"}]}}

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "name-uppercase",
        edit(INF, "metadata.name", "Bad_Name"),
        "metadata.name",
        "'Bad_Name' is not a DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit); it names the Service, e.g. workspace-phi-3-mini",
    ),
    (
        "name-too-long",
        edit(INF, "metadata.name", "a" * 64),
        "metadata.name",
        "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is not a DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit); it names the Service, e.g. workspace-phi-3-mini",
    ),
    (
        "name-too-long-for-the-statefulset",
        edit(INF, "metadata.name", "w" * 53),
        "metadata.name",
        "'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww' has 53 characters; Workspace names are limited to 52 so that the pods of its StatefulSet get a valid controller-revision-hash label (<name>-<hash>, at most 63 characters); choose a shorter name",
    ),
    (
        "name-trailing-dash",
        edit(INF, "metadata.name", "ws-"),
        "metadata.name",
        "'ws-' is not a DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit); it names the Service, e.g. workspace-phi-3-mini",
    ),
    (
        "name-missing",
        edit(INF, "metadata.name", DELETE),
        "metadata.name",
        "is required; set a lower-case name such as workspace-phi-3-mini",
    ),
    (
        "both-inference-and-tuning",
        {**INF, "tuning": TUN["tuning"]},
        "tuning",
        "inference and tuning are mutually exclusive; use one Workspace to tune, another to serve",
    ),
    (
        "neither-inference-nor-tuning",
        edit(INF, "inference", DELETE),
        "inference",
        "set exactly one of inference (serve a model) or tuning (fine-tune a model)",
    ),
    (
        "spec-wrapper",
        {**{k: v for k, v in INF.items() if k not in ("resource", "inference")}, "spec": {"resource": INF["resource"]}},
        "spec",
        "Workspace has no spec; move resource, inference and tuning to the top level (next to metadata)",
    ),
    (
        "wrong-api-version",
        edit(INF, "apiVersion", "kaito.sh/v1"),
        "apiVersion",
        "'kaito.sh/v1' is not a Workspace version; use kaito.sh/v1beta1 or kaito.sh/v1alpha1",
    ),
    (
        "wrong-kind",
        edit(INF, "kind", "Deployment"),
        "kind",
        "'Deployment' is not handled here; set kind: Workspace",
    ),
    (
        "unknown-field-typo",
        edit(INF, "resource.instancetype", "x"),
        "resource.instancetype",
        "unknown field (did you mean 'instanceType'?); remove it or fix its name (fields are camelCase, e.g. instanceType)",
    ),
    (
        "count-string",
        edit(INF, "resource.count", "2"),
        "resource.count",
        "must be an integer, got a string '2'",
    ),
    (
        "count-zero",
        edit(INF, "resource.count", 0),
        "resource.count",
        "must be >= 1, got 0",
    ),
    (
        "resource-missing",
        edit(INF, "resource", DELETE),
        "resource",
        "is required; set it",
    ),
    (
        "label-selector-missing",
        edit(INF, "resource.labelSelector", DELETE),
        "resource.labelSelector",
        "is required; set it",
    ),
    (
        "access-mode-invalid",
        edit(INF, "inference.preset.accessMode", "secret"),
        "inference.preset.accessMode",
        "'secret' is not supported; use 'public' or 'private'",
    ),
    (
        "method-invalid",
        edit(TUN, "tuning.method", "full"),
        "tuning.method",
        "'full' is not supported; use 'lora' or 'qlora'",
    ),
    (
        "adapters-not-list",
        edit(INF, "inference.adapters", {"source": {}}),
        "inference.adapters",
        "must be a list, got an object",
    ),
    (
        "instance-type-missing",
        edit(INF, "resource.instanceType", DELETE),
        "resource.instanceType",
        "is required when kaito provisions the nodes; set a GPU instance type such as Standard_NC6s_v3 (or local-cpu for kaito dev)",
    ),
    (
        "instance-type-unknown",
        edit(INF, "resource.instanceType", "m5.large"),
        "resource.instanceType",
        "instance type 'm5.large' is not in the SKU catalog; did you mean 'g5.xlarge', 'g5.4xlarge', 'g5.2xlarge'?; see docs/api.md for supported instance types",
    ),
    (
        "instance-type-wrong-case",
        edit(INF, "resource.instanceType", "standard_nc6s_v3"),
        "resource.instanceType",
        "instance type 'standard_nc6s_v3' is not in the SKU catalog; did you mean 'Standard_NC6s_v3'? (names are case-sensitive); see docs/api.md for supported instance types",
    ),
    (
        "selector-empty",
        edit(INF, "resource.labelSelector", {}),
        "resource.labelSelector",
        "must select the workspace's nodes; set matchLabels, e.g. {apps: phi-3}",
    ),
    (
        "selector-bad-value",
        edit(INF, "resource.labelSelector.matchLabels", {"apps": "bad value"}),
        "resource.labelSelector.matchLabels.apps",
        "'bad value' is not a valid label value (at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)",
    ),
    (
        "selector-bad-key",
        edit(INF, "resource.labelSelector.matchLabels", {"-bad": "x"}),
        "resource.labelSelector.matchLabels",
        "'-bad' is not a valid label key ([prefix/]name, name at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)",
    ),
    (
        "selector-in-without-values",
        edit(INF, "resource.labelSelector", {"matchExpressions": [{"key": "a", "operator": "In"}]}),
        "resource.labelSelector.matchExpressions[0].values",
        "must not be empty for operator In; list at least one value",
    ),
    (
        "selector-exists-with-values",
        edit(
            INF, "resource.labelSelector", {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
        ),
        "resource.labelSelector.matchExpressions[0].values",
        "must be empty for operator Exists; remove values",
    ),
    (
        "selector-bad-operator",
        edit(INF, "resource.labelSelector", {"matchExpressions": [{"key": "a", "operator": "Has"}]}),
        "resource.labelSelector.matchExpressions[0].operator",
        "'Has' is not supported; use 'In', 'NotIn', 'Exists' or 'DoesNotExist'",
    ),
    (
        "preset-unknown",
        edit(INF, "inference.preset.name", "phi-3-mini"),
        "inference.preset.name",
        "preset 'phi-3-mini' is not supported; did you mean 'phi-3.5-mini-instruct', 'phi-3-mini-4k-instruct', 'phi-4-mini-instruct'?; run `kaito plan --list-presets` for the supported presets",
    ),
    (
        "preset-deprecated",
        edit(INF, "inference.preset.name", "llama-2-7b"),
        "inference.preset.name",
        "preset 'llama-2-7b' is deprecated and no longer supported; use 'llama-3.1-8b-instruct' instead",
    ),
    (
        "private-without-image",
        edit(INF, "inference.preset.accessMode", "private"),
        "inference.preset.presetOptions.image",
        "is required with accessMode: private; set the private image that holds the weights",
    ),
    (
        "preset-and-template",
        edit(INF, "inference.template", TEMPLATE),
        "inference.template",
        "preset and template are mutually exclusive; remove one of them",
    ),
    (
        "neither-preset-nor-template",
        edit(INF, "inference", {}),
        "inference.preset",
        "set a preset (e.g. name: phi-3-mini-4k-instruct) or a pod template",
    ),
    (
        "template-without-containers",
        edit(edit(INF, "inference.preset", DELETE), "inference.template", {"spec": {}}),
        "inference.template.spec.containers",
        "must list at least one container",
    ),
    (
        "config-bad-name",
        edit(INF, "inference.config", "My Config"),
        "inference.config",
        "'My Config' is not a valid object name (lower-case DNS subdomain, e.g. my-config)",
    ),
    (
        "adapters-too-many",
        edit(INF, "inference.adapters", [{"source": {"name": f"a{i}", "image": "reg.io/a:1"}} for i in range(11)]),
        "inference.adapters",
        "has 11 adapters; at most 10 are supported, remove 1",
    ),
    (
        "adapter-duplicate",
        edit(ADP, "inference.adapters", [{"source": {"name": "a1", "image": "reg.io/a:1"}}] * 2),
        "inference.adapters[1].source.name",
        "'a1' duplicates inference.adapters[0]; names must be unique",
    ),
    (
        "adapter-no-name",
        edit(ADP, "inference.adapters[0].source.name", DELETE),
        "inference.adapters[0].source.name",
        "is required; name the adapter (it becomes /mnt/adapter/<name>)",
    ),
    (
        "adapter-bad-name",
        edit(ADP, "inference.adapters[0].source.name", "Adapter_1"),
        "inference.adapters[0].source.name",
        "'Adapter_1' is not a DNS subdomain (lower-case a-z, 0-9, '-' and '.'); e.g. phi-3-adapter",
    ),
    (
        "adapter-urls",
        edit(ADP, "inference.adapters[0].source", {"name": "a1", "urls": ["https://example.com/a"]}),
        "inference.adapters[0].source.urls",
        "adapters load from an image or a volume, not URLs; set source.image",
    ),
    (
        "adapter-no-source",
        edit(ADP, "inference.adapters[0].source", {"name": "a1"}),
        "inference.adapters[0].source",
        "set source.image (an adapter image) or source.volumeSource",
    ),
    (
        "adapter-image-and-volume",
        edit(ADP, "inference.adapters[0].source.volumeSource", {"emptyDir": {}}),
        "inference.adapters[0].source",
        "set only one of source.image and source.volumeSource",
    ),
    (
        "adapter-strength-above-1",
        edit(ADP, "inference.adapters[0].strength", "1.01"),
        "inference.adapters[0].strength",
        '\'1.01\' is outside [0, 1]; use a decimal string between "0.0" and "1.0"',
    ),
    (
        "adapter-strength-negative",
        edit(ADP, "inference.adapters[0].strength", "-0.1"),
        "inference.adapters[0].strength",
        '\'-0.1\' is outside [0, 1]; use a decimal string between "0.0" and "1.0"',
    ),
    (
        "adapter-strength-not-number",
        edit(ADP, "inference.adapters[0].strength", "high"),
        "inference.adapters[0].strength",
        '\'high\' is not a number; use a decimal string between "0.0" and "1.0"',
    ),
    (
        "adapter-strength-nan",
        edit(ADP, "inference.adapters[0].strength", "nan"),
        "inference.adapters[0].strength",
        '\'nan\' is outside [0, 1]; use a decimal string between "0.0" and "1.0"',
    ),
    (
        "adapter-strength-number",
        edit(ADP, "inference.adapters[0].strength", 0.5),
        "inference.adapters[0].strength",
        "must be a string, got a number; quote the value",
    ),
    (
        "adapter-with-template",
        edit(edit(ADP, "inference.preset", DELETE), "inference.template", TEMPLATE),
        "inference.adapters",
        "adapters need inference.preset (a template workspace loads its own)",
    ),
    (
        "gpu-memory-insufficient",
        edit(inference_ws(preset="phi-3-medium-128k-instruct"), "resource.instanceType", "Standard_NC6s_v3"),
        "resource.instanceType",
        "Insufficient total GPU memory: 1 x 'Standard_NC6s_v3' has 16 GiB of GPU memory; phi-3-medium-128k-instruct needs 26 GiB. Use Standard_NV72ads_A10_v5 or set resource.count to 3.",
    ),
    (
        "gpu-memory-70b-one-a100",
        inference_ws(preset="llama-3.3-70b-instruct"),
        "resource.instanceType",
        "Insufficient total GPU memory: 1 x 'Standard_NC24ads_A100_v4' has 80 GiB of GPU memory; llama-3.3-70b-instruct needs 131.42 GiB. Use Standard_NC80adis_H100_v5 or set resource.count to 3.",
    ),
    (
        "gpu-preset-on-cpu-node",
        inference_ws(instance_type="local-cpu"),
        "resource.instanceType",
        "'local-cpu' has no GPU and phi-3-mini-4k-instruct needs NVIDIA GPUs; use local-gpu-small or local-gpu-large (or a CPU preset such as smollm2-135m-instruct)",
    ),
    (
        "tuning-preset-missing",
        edit(TUN, "tuning.preset", DELETE),
        "tuning.preset",
        "is required; set the base model, e.g. name: phi-3-mini-4k-instruct",
    ),
    (
        "tuning-preset-not-tunable",
        edit(TUN, "tuning.preset.name", "llama-3.1-8b-instruct"),
        "tuning.preset.name",
        "preset 'llama-3.1-8b-instruct' does not support tuning; use one of mistral-7b, mistral-7b-instruct, phi-3-medium-128k-instruct, phi-3-medium-4k-instruct, phi-3-mini-128k-instruct, phi-3-mini-4k-instruct, phi-3.5-mini-instruct, phi-4, phi-4-mini-instruct, qwen2.5-coder-32b-instruct, qwen2.5-coder-7b-instruct, smollm2-135m-instruct",
    ),
    (
        "tuning-method-missing",
        edit(TUN, "tuning.method", DELETE),
        "tuning.method",
        "is required; set lora or qlora",
    ),
    (
        "tuning-count-2",
        edit(TUN, "resource.count", 2),
        "resource.count",
        "tuning runs on one node; set resource.count to 1 (got 2)",
    ),
    (
        "tuning-input-missing",
        edit(TUN, "tuning.input", DELETE),
        "tuning.input",
        "is required; set exactly one of urls, image or volumeSource",
    ),
    (
        "tuning-input-two-sources",
        edit(TUN, "tuning.input.image", "reg.io/data:1"),
        "tuning.input",
        "set exactly one of urls, image or volumeSource (got urls, image)",
    ),
    (
        "tuning-input-none",
        edit(TUN, "tuning.input", {"name": "data"}),
        "tuning.input",
        "set exactly one of urls, image or volumeSource (got none)",
    ),
    (
        "tuning-url-loopback",
        edit(TUN, "tuning.input.urls", ["http://127.0.0.1:8080/data.parquet"]),
        "tuning.input.urls[0]",
        "'http://127.0.0.1:8080/data.parquet' points at 127.0.0.1, a loopback address; use a URL to a public host",
    ),
    (
        "tuning-url-metadata",
        edit(TUN, "tuning.input.urls", ["http://169.254.169.254/latest/meta-data"]),
        "tuning.input.urls[0]",
        "'http://169.254.169.254/latest/meta-data' points at 169.254.169.254, a link-local address (cloud metadata lives here); use a URL to a public host",
    ),
    (
        "tuning-url-private",
        edit(TUN, "tuning.input.urls", ["https://10.0.0.5/data.parquet"]),
        "tuning.input.urls[0]",
        "'https://10.0.0.5/data.parquet' points at 10.0.0.5, a private address; use a URL to a public host",
    ),
    (
        "tuning-url-localhost",
        edit(TUN, "tuning.input.urls", ["http://localhost/data"]),
        "tuning.input.urls[0]",
        "'http://localhost/data' points at localhost; use a URL to a public host",
    ),
    (
        "tuning-url-file-scheme",
        edit(TUN, "tuning.input.urls", ["file:///etc/passwd"]),
        "tuning.input.urls[0]",
        "'file:///etc/passwd' uses scheme 'file'; use an http:// or https:// URL",
    ),
    (
        "tuning-url-decimal-ip",
        edit(TUN, "tuning.input.urls", ["http://2130706433/"]),
        "tuning.input.urls[0]",
        "'http://2130706433/' points at 127.0.0.1, a loopback address; use a URL to a public host",
    ),
    (
        "tuning-url-mapped-v6",
        edit(TUN, "tuning.input.urls", ["http://[::ffff:10.1.2.3]/x"]),
        "tuning.input.urls[0]",
        "'http://[::ffff:10.1.2.3]/x' points at 10.1.2.3, a private address; use a URL to a public host",
    ),
    (
        "tuning-url-gcp-metadata",
        edit(TUN, "tuning.input.urls", ["http://metadata.google.internal/computeMetadata/v1/"]),
        "tuning.input.urls[0]",
        "'http://metadata.google.internal/computeMetadata/v1/' points at a cloud metadata service; use a URL to a public host",
    ),
    (
        "tuning-output-missing",
        edit(TUN, "tuning.output", DELETE),
        "tuning.output",
        "is required; set image (+ imagePushSecret) or volumeSource",
    ),
    (
        "tuning-output-both",
        edit(TUN, "tuning.output.volumeSource", {"emptyDir": {}}),
        "tuning.output",
        "set exactly one of image (+ imagePushSecret) or volumeSource",
    ),
    (
        "tuning-output-no-push-secret",
        edit(TUN, "tuning.output.imagePushSecret", DELETE),
        "tuning.output.imagePushSecret",
        "is required with output.image; name a docker-registry Secret that can push to the registry",
    ),
    (
        "tuning-output-image-whitespace",
        edit(TUN, "tuning.output.image", "reg.io/a b:1"),
        "tuning.output.image",
        "'reg.io/a b:1' is not an image reference; use registry/repository:tag",
    ),
]


def test_the_table_covers_at_least_40_distinct_invalid_workspaces() -> None:
    assert len({case[0] for case in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize(("obj", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_workspace_is_denied_with_field_path_and_fix(obj: dict[str, Any], path: str, message: str) -> None:
    verdict = validate_workspace(obj)

    assert not verdict.allowed
    assert [(e.path, e.message) for e in verdict.errors] == [(path, message)]


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_both_versions_apply_the_same_rules(version: str) -> None:
    obj = edit(inference_ws(version=version), "inference.preset.name", "llama-2-7b")

    verdict = validate_workspace(obj)

    assert [e.path for e in verdict.errors] == ["inference.preset.name"]
    assert "deprecated and no longer supported" in verdict.errors[0].message
