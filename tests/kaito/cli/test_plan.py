"""`kaito plan` and `kaito gen crds` through the real `kaito` entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kaito.cli import main
from tests.kaito.api.builders import ROOT, SEED_EXAMPLES, edit, inference_ws, load


def _write(tmp_path: Path, obj: object, name: str = "ws.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(obj))
    return path


def test_plan_prints_preset_sku_nodes_gpus_and_parallelism(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", str(SEED_EXAMPLES[0])])

    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[:8] == [
        "Workspace default/workspace-phi-3-mini",
        "  admission:    allowed",
        "  preset:       phi-3-mini-4k-instruct (phi-3, 7.12 GiB weights, 4096-token context, vllm runtime)",
        "  instance:     Standard_NC6s_v3 (azure, 1 x NVIDIA V100, 16 GiB GPU memory)",
        "  provisioning: auto (1 NodeClaim(s))",
        "  nodes:        1",
        "  GPUs:         1 per node, 1 in total (the model needs at least 1)",
        "  parallelism:  tensor 1 x pipeline 1; KV cache for 4096 tokens (3.80 GiB reserve, 9.18 GiB for weights per "
        "GPU)",
    ]
    assert "StatefulSet/workspace-phi-3-mini" in out


def test_plan_yaml_prints_every_object_the_operator_creates(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", str(SEED_EXAMPLES[1]), "-o", "yaml"])

    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert code == 0
    assert [d["kind"] for d in docs] == ["NodeClaim", "Service", "ConfigMap", "StatefulSet"]
    sts = docs[-1]
    init = sts["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][4:6] == ["ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1", "/mnt/adapter/phi-3-adapter"]


def test_plan_tuning_example_yaml_has_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_EXAMPLES[2]), "-o", "yaml"]) == 0

    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["NodeClaim", "ConfigMap", "Job"]


def test_plan_json_summarises_each_workspace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, inference_ws(preset="llama-3.3-70b-instruct", count=3))

    assert main(["plan", str(path), "-o", "json"]) == 0

    doc = json.loads(capsys.readouterr().out)
    summary = doc["workspaces"][0]
    assert {k: summary[k] for k in ("preset", "instanceType", "nodeCount", "gpusPerNode", "gpusTotal", "minGPUs")} == {
        "preset": "llama-3.3-70b-instruct",
        "instanceType": "Standard_NC24ads_A100_v4",
        "nodeCount": 3,
        "gpusPerNode": 1,
        "gpusTotal": 3,
        "minGPUs": 3,
    }
    assert summary["tensorParallelSize"] == 1 and summary["pipelineParallelSize"] == 3
    assert [o["kind"] for o in doc["objects"]].count("NodeClaim") == 3


def test_plan_denies_with_field_errors_and_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, inference_ws(preset="phi-3-medium-128k-instruct", instance_type="Standard_NC6s_v3"))

    code = main(["plan", str(path)])

    out = capsys.readouterr().out
    assert code == 1
    assert "  admission:    DENIED" in out
    assert "  error:        resource.instanceType: Insufficient total GPU memory: 1 x 'Standard_NC6s_v3'" in out


def test_plan_yaml_errors_go_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, edit(inference_ws(), "metadata.name", "Bad"))

    code = main(["plan", str(path), "-o", "yaml"])

    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.startswith("error: default/Bad: metadata.name: 'Bad' is not a DNS-1123 label")


def test_plan_checks_updates_against_the_old_object(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = _write(tmp_path, inference_ws(), "old.yaml")
    new = _write(tmp_path, edit(inference_ws(), "resource.count", 2), "new.yaml")

    assert main(["plan", str(new), "--old", str(old)]) == 1
    assert "resource.count: is immutable (was 1, now 2)" in capsys.readouterr().out


def test_plan_checks_a_tuning_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = _write(tmp_path, {"training_config": {"QuantizationConfig": {"load_in_4bit": False}}}, "cfg.yaml")

    code = main(["plan", str(SEED_EXAMPLES[2]), "--tuning-config", str(config)])

    assert code == 1
    assert "qlora needs quantization; set load_in_4bit: true" in capsys.readouterr().out


def test_plan_handles_several_documents_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    text = SEED_EXAMPLES[0].read_text() + "---\n" + (ROOT / "examples/inference/smollm2-local.yaml").read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(text))

    assert main(["plan", "-"]) == 0
    out = capsys.readouterr().out
    assert "Workspace default/workspace-phi-3-mini" in out and "Workspace default/workspace-smollm2" in out
    assert "parallelism:  none (CPU preset, one process)" in out


def test_plan_unreadable_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["plan", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read input:")


def test_list_presets_and_skus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--list-presets"]) == 0
    presets = capsys.readouterr().out
    assert main(["plan", "--list-skus"]) == 0
    skus = capsys.readouterr().out

    assert "smollm2-135m-instruct" in presets and "deprecated (rejected): " in presets
    assert any(line.startswith("Standard_NC6s_v3") and "NVIDIA V100" in line for line in skus.splitlines())
    assert any(line.startswith("local-cpu ") for line in skus.splitlines())


def test_gen_crds_check_passes_on_the_committed_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gen", "crds", "--check", "--out", str(ROOT / "manifests" / "crds")]) == 0
    assert "CRDs up to date" in capsys.readouterr().out


def test_gen_crds_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gen", "crds", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kaito.sh_workspaces.yaml",
        "karpenter.sh_nodeclaims.test.yaml",
    ]


def test_plan_with_byo_nodes_reads_their_gpu_labels(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    labels = {"apps": "test", "nvidia.com/gpu.product": "Tesla-V100", "nvidia.com/gpu.count": "1",
              "nvidia.com/gpu.memory": "16384"}  # fmt: skip
    nodes = _write(
        tmp_path,
        {"apiVersion": "v1", "kind": "List", "items": [{"metadata": {"name": "n1", "labels": labels}}]},
        "nodes.yaml",
    )
    small = _write(tmp_path, inference_ws(instance_type=None), "small.yaml")
    big = _write(tmp_path, inference_ws(preset="phi-4", instance_type=None), "big.yaml")

    ok = main(["plan", str(small), "--no-auto-provisioning", "--nodes", str(nodes), "-o", "json"])
    small_doc = json.loads(capsys.readouterr().out)
    denied = main(["plan", str(big), "--no-auto-provisioning", "--nodes", str(nodes)])

    assert ok == 0 and denied == 1
    summary = small_doc["workspaces"][0]
    assert (summary["provisioning"], summary["gpusPerNode"], summary["instanceType"]) == ("byo", 1, None)
    assert [o["kind"] for o in small_doc["objects"]] == ["Service", "ConfigMap", "StatefulSet"]
    assert "Insufficient total GPU memory: the selected Tesla-V100 nodes have 16 GiB each" in capsys.readouterr().out


def test_plan_tuning_text_shows_a_single_node_trainer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED_EXAMPLES[2])]) == 0

    out = capsys.readouterr().out
    assert "  GPUs:         1 per node, 1 in total\n" in out
    assert "  parallelism:  none (the phi-3-mini-4k-instruct trainer runs on one node)\n" in out
    assert "Job/workspace-phi-3-mini" in out


def test_plan_skips_other_kinds_in_the_same_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "push"}, "type": "Opaque"}
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(secret) + "---\n" + SEED_EXAMPLES[0].read_text())
    only_secret = _write(tmp_path, secret, "secret.yaml")

    assert main(["plan", str(path)]) == 0
    captured = capsys.readouterr()
    assert main(["plan", str(only_secret)]) == 2

    assert "note: skipped Secret/push (not a Workspace)" in captured.err
    assert "Workspace default/workspace-phi-3-mini" in captured.out
    assert "holds no Workspace" in capsys.readouterr().err


def test_plan_sizes_gpus_for_a_longer_context(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, inference_ws(preset="llama-3.1-8b-instruct", instance_type="Standard_NV36ads_A10_v5"))

    assert main(["plan", str(path), "-o", "json"]) == 0
    default = json.loads(capsys.readouterr().out)["workspaces"][0]
    assert main(["plan", str(path), "-o", "json", "--max-model-len", "32768"]) == 0
    long = json.loads(capsys.readouterr().out)
    assert main(["plan", str(path), "--max-model-len", "0"]) == 2

    assert (default["maxModelLen"], default["nodeCount"]) == (8192, 1)
    assert long["workspaces"][0]["maxModelLen"] == 32768 and long["workspaces"][0]["nodeCount"] == 2
    config = next(o for o in long["objects"] if o["kind"] == "ConfigMap")
    assert "max_model_len: 32768" in config["data"]["inference_config.yaml"]


def test_plan_of_a_tuning_workspace_whose_config_is_elsewhere_says_what_it_cannot_know(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _write(tmp_path, edit(load(SEED_EXAMPLES[2]), "tuning.config", "my-config"))

    assert main(["plan", str(path), "-o", "json"]) == 0

    doc = json.loads(capsys.readouterr().out)
    assert [o["kind"] for o in doc["objects"]] == ["NodeClaim", "Job"]
    assert "kaito.sh/tuning-hash" not in doc["objects"][-1]["metadata"]["annotations"]
    assert any("pass its training_config.yaml with --tuning-config" in n for n in doc["workspaces"][0]["notes"])
