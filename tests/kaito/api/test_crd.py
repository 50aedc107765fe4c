"""Generated CRDs: structural schemas, the seed's printer columns, short names, status subresource, and the
committed manifests/crds matching the generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kaito.api.crd import generate_crds, nodeclaim_crd, structural_problems, workspace_crd
from kaito.cli.gen import check_crds, rendered_crds, write_crds
from tests.kaito.api.builders import ALL_EXAMPLES, ROOT, edit, inference_ws, load


def _versions(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in crd["spec"]["versions"]}


@pytest.mark.parametrize("name", sorted(generate_crds()))
def test_every_version_schema_is_structural(name: str) -> None:
    for version in generate_crds()[name]["spec"]["versions"]:
        assert structural_problems(version["schema"]["openAPIV3Schema"]) == [], version["name"]


def test_structural_checker_flags_real_problems() -> None:
    bad = {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}, "b": {"type": "array"}}}

    assert structural_problems(bad) == [".a: has anyOf", ".a: has no type", ".b: array without items"]


def test_workspace_crd_names_scope_and_versions() -> None:
    crd = workspace_crd()
    spec = crd["spec"]

    assert crd["metadata"]["name"] == "workspaces.kaito.sh"
    assert spec["group"] == "kaito.sh" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["wk", "wks"]
    assert spec["names"]["kind"] == "Workspace" and spec["names"]["plural"] == "workspaces"
    versions = _versions(crd)
    assert {n: (v["served"], v["storage"]) for n, v in versions.items()} == {
        "v1alpha1": (True, False),
        "v1beta1": (True, True),
    }
    assert all(v["subresources"] == {"status": {}} for v in versions.values())


def test_printer_columns_are_the_seeds_plus_job_started_in_wide_output() -> None:
    columns = _versions(workspace_crd())["v1alpha1"]["additionalPrinterColumns"]

    default = [c["name"] for c in columns if not c.get("priority")]
    assert default == ["Instance", "ResourceReady", "InferenceReady", "WorkspaceReady", "Age"]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Instance"]["jsonPath"] == ".resource.instanceType"
    assert by_name["WorkspaceReady"]["jsonPath"] == '.status.conditions[?(@.type=="WorkspaceSucceeded")].status'
    assert by_name["JobStarted"]["priority"] == 1
    assert by_name["JobStarted"]["jsonPath"] == '.status.conditions[?(@.type=="JobStarted")].status'
    assert by_name["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_schema_is_top_level_shape_with_descriptions_for_kubectl_explain() -> None:
    schema = _versions(workspace_crd())["v1beta1"]["schema"]["openAPIV3Schema"]
    props = schema["properties"]

    assert list(props) == ["apiVersion", "kind", "metadata", "resource", "inference", "tuning", "status"]
    assert "spec" not in props
    resource = props["resource"]
    assert resource["required"] == ["labelSelector"]
    assert resource["description"].startswith("The nodes the workspace runs on")
    assert all(sub.get("description") for sub in resource["properties"].values())
    assert resource["properties"]["count"] == {
        "minimum": 1,
        "type": "integer",
        "description": "Number of nodes to run the workload on (default 1).",
        "default": 1,
    }
    assert set(props["status"]["properties"]) == {"workerNodes", "conditions", "state", "targetNodeCount"}
    assert props["inference"]["properties"]["template"]["x-kubernetes-preserve-unknown-fields"] is True
    assert props["tuning"]["properties"]["method"]["enum"] == ["lora", "qlora"]


def test_only_v1alpha1_schema_defaults_instance_type() -> None:
    versions = _versions(workspace_crd())
    alpha = versions["v1alpha1"]["schema"]["openAPIV3Schema"]["properties"]["resource"]["properties"]
    beta = versions["v1beta1"]["schema"]["openAPIV3Schema"]["properties"]["resource"]["properties"]

    assert alpha["instanceType"]["default"] == "Standard_NC24ads_A100_v4"
    assert "default" not in beta["instanceType"]


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_validate_against_the_crd_schema(path: Path) -> None:
    doc = load(path)
    schema = _versions(workspace_crd())[doc["apiVersion"].split("/")[1]]["schema"]["openAPIV3Schema"]

    jsonschema.validate(doc, schema)


def test_crd_schema_rejects_wrong_types_and_enums() -> None:
    schema = _versions(workspace_crd())["v1beta1"]["schema"]["openAPIV3Schema"]

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(edit(inference_ws(), "resource.count", 0), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(edit(inference_ws(), "inference.preset.accessMode", "secret"), schema)


def test_nodeclaim_crd_is_a_cluster_scoped_test_manifest() -> None:
    crd = nodeclaim_crd()

    assert crd["metadata"]["name"] == "nodeclaims.karpenter.sh"
    assert crd["metadata"]["labels"] == {"kaito.sh/test-manifest": "true"}
    assert crd["spec"]["scope"] == "Cluster"
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["properties"]["providerID"]["type"] == "string"


def test_committed_manifests_match_the_generator() -> None:
    assert check_crds(ROOT / "manifests" / "crds") == []


def test_written_manifests_are_loadable_yaml(tmp_path: Path) -> None:
    paths = write_crds(tmp_path)

    assert sorted(p.name for p in paths) == sorted(rendered_crds())
    assert yaml.safe_load(paths[0].read_text()) == generate_crds()[paths[0].name]


@pytest.mark.slow
def test_check_reports_drift_and_hack_script_exits_non_zero(tmp_path: Path) -> None:
    write_crds(tmp_path)
    target = tmp_path / "kaito.sh_workspaces.yaml"
    target.write_text(target.read_text().replace("shortNames:\n    - wk\n", "shortNames:\n    - wx\n"))

    problems = check_crds(tmp_path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen-crds"), "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert len(problems) == 1 and "-    - wx" in problems[0] and "+    - wk" in problems[0]
    assert result.returncode == 1
    assert "run hack/gen-crds and commit" in result.stderr
