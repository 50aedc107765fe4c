"""Tuning builders: the Job's init containers, trainer (and its push) and volumes for each input/output kind, the config
snapshot, and the contract with the runtime (every command parses with the CLI it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api import constants as c
from kaito.api import parse_workspace
from kaito.presets import load_catalog
from kaito.runtime.oci import build_parser as oci_parser
from kaito.runtime.tuning.__main__ import build_parser as tuner_parser
from kaito.runtime.tuning.defaults import default_config_text
from kaito.runtime.tuning.download import build_parser as download_parser
from kaito.runtime.tuning.trainer import ADAPTER_FILES as TRAINER_ADAPTER_FILES
from kaito.workloads import default_training_config, tuning_configmap, tuning_job
from kaito.workloads.tuning import (
    ADAPTER_FILES,
    ANNOTATION_CONFIG_SOURCE,
    ANNOTATION_JOB_HASH,
    is_loopback_registry,
    trainer_model_arg,
)
from tests.kaito.api.builders import edit, tuning_ws
from tests.kaito.controllers.tuning.builders import tuning_workspace

CATALOG = load_catalog()
PRESET = CATALOG.preset("phi-3-mini-4k-instruct")
SMOL = CATALOG.preset("smollm2-135m-instruct")


def _job(obj: dict[str, Any]) -> dict[str, Any]:
    return tuning_job(parse_workspace(obj), PRESET, gpus_per_node=1, version="9.9.9")


def _names(containers: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in containers]


def job_for(wire: dict[str, Any], config: str = "training_config: {}") -> dict[str, Any]:
    return tuning_job(parse_workspace(wire), SMOL, gpus_per_node=0, version="0.1.0", config_text=config)


def containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return {ct["name"]: ct for ct in [*(pod.get("initContainers") or []), *pod["containers"]]}


def test_url_input_and_image_output_download_then_train_and_push_only_the_adapter() -> None:
    job = _job(tuning_ws())
    pod = job["spec"]["template"]["spec"]

    assert job["metadata"]["name"] == "tune" and job["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    assert _names(pod["initContainers"]) == ["data-downloader"]
    assert pod["initContainers"][0]["command"] == [
        "python", "-m", "kaito.runtime.tuning.download", "--dest", "/mnt/data", "https://example.com/data.parquet",
    ]  # fmt: skip
    assert _names(pod["containers"]) == ["tuner"]
    tuner = pod["containers"][0]
    assert tuner["image"] == PRESET.image
    assert tuner["command"] == [
        "python", "-m", "kaito.runtime.tuning", "--config", "/mnt/config/training_config.yaml",
        "--data-dir", "/mnt/data", "--output-dir", "/mnt/output",
        "--model", "/workspace/weights", "--method", "qlora", "--metrics-port", "5000",
        "--push-image", "registry.example.com/adapters/a:0.1",
        "--push-docker-config", "/mnt/push-secret/.dockerconfigjson", "--model-name", "phi-3-mini-4k-instruct",
    ]  # fmt: skip
    assert tuner["ports"] == [{"name": "metrics", "containerPort": 5000, "protocol": "TCP"}]
    assert tuner["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert tuner["volumeMounts"] == [
        {"name": "data-volume", "mountPath": "/mnt/data"},
        {"name": "config-volume", "mountPath": "/mnt/config", "readOnly": True},
        {"name": "output-volume", "mountPath": "/mnt/output"},
        {"name": "push-secret", "mountPath": "/mnt/push-secret", "readOnly": True},
    ]
    assert {"name": "push-secret", "secret": {"secretName": "push-secret"}} in pod["volumes"]
    assert {"name": "config-volume", "configMap": {"name": "tune-tuning-config"}} in pod["volumes"]


def test_the_pushed_files_are_the_adapter_the_trainer_writes() -> None:
    assert ADAPTER_FILES == TRAINER_ADAPTER_FILES == ("adapter_config.json", "adapter_model.safetensors")


def test_volume_input_and_output_mount_the_users_volumes_and_train_in_the_main_container() -> None:
    obj = edit(
        edit(tuning_ws(), "tuning.input", {"volumeSource": {"persistentVolumeClaim": {"claimName": "data"}}}),
        "tuning.output",
        {"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}},
    )

    pod = _job(obj)["spec"]["template"]["spec"]

    assert "initContainers" not in pod
    assert _names(pod["containers"]) == ["tuner"]
    assert {"name": "data-volume", "persistentVolumeClaim": {"claimName": "data"}} in pod["volumes"]
    assert {"name": "output-volume", "persistentVolumeClaim": {"claimName": "out"}} in pod["volumes"]


def test_image_input_is_pulled_with_its_secret() -> None:
    obj = edit(tuning_ws(), "tuning.input", {"image": "reg.io/data:1", "imagePullSecrets": ["pull"]})

    puller = _job(obj)["spec"]["template"]["spec"]["initContainers"][0]

    assert puller["name"] == "data-puller"
    assert puller["command"] == [
        "python", "-m", "kaito.runtime.oci", "pull", "reg.io/data:1", "/mnt/data",
        "--docker-config", "/mnt/secrets/pull/.dockerconfigjson",
    ]  # fmt: skip


def test_default_configmap_is_a_snapshot_of_the_packaged_default_of_the_method() -> None:
    cm = tuning_configmap(parse_workspace(tuning_ws(method="qlora")))

    assert cm["metadata"]["name"] == "tune-tuning-config"
    assert cm["data"]["training_config.yaml"] == default_config_text("qlora")
    assert cm["metadata"]["annotations"] == {ANNOTATION_CONFIG_SOURCE: "default/qlora"}
    doc = yaml.safe_load(cm["data"]["training_config.yaml"])
    assert doc == default_training_config("qlora")
    assert doc["training_config"]["QuantizationConfig"]["load_in_4bit"] is True
    assert "QuantizationConfig" not in default_training_config("lora")["training_config"]


def test_a_users_config_is_snapshotted_and_the_job_mounts_the_snapshot() -> None:
    ws = parse_workspace(edit(tuning_ws(), "tuning.config", "my-config"))

    cm = tuning_configmap(ws, "training_config: {}\n")
    pod = tuning_job(ws, PRESET, gpus_per_node=1, version="9.9.9")["spec"]["template"]["spec"]

    assert cm["metadata"]["annotations"] == {ANNOTATION_CONFIG_SOURCE: "configmap/default/my-config"}
    assert {"name": "config-volume", "configMap": {"name": "tune-tuning-config"}} in pod["volumes"]


def test_every_container_command_is_accepted_by_the_runtime_cli_it_runs() -> None:
    job = job_for(tuning_workspace(input_image=None))
    parsers = {"kaito.runtime.tuning": tuner_parser(), "kaito.runtime.tuning.download": download_parser(),
               "kaito.runtime.oci": oci_parser()}
    for ct in containers(job).values():
        command = ct["command"]
        assert command[:2] == ["python", "-m"]
        args = parsers[command[2]].parse_args(command[3:])  # SystemExit(2) on a mismatch
        if command[2] == "kaito.runtime.tuning":
            assert args.model == "smollm2-135m-instruct" and args.method == "qlora"
            assert args.config == "/mnt/config/training_config.yaml"
            assert args.push_image == "127.0.0.1:5000/adapters/tune:v1"
            assert args.push_plain_http is True  # 127.0.0.1 registry
            assert args.model_name == "smollm2-135m-instruct"


def test_a_changed_spec_or_config_changes_the_job_hash_and_equal_inputs_do_not() -> None:
    base = job_for(tuning_workspace())["metadata"]["annotations"][ANNOTATION_JOB_HASH]
    assert job_for(tuning_workspace())["metadata"]["annotations"][ANNOTATION_JOB_HASH] == base
    other_url = job_for(tuning_workspace(urls=["https://data.example.com/v2.parquet"]))
    assert other_url["metadata"]["annotations"][ANNOTATION_JOB_HASH] != base
    other_config = job_for(tuning_workspace(), config="training_config: {LoraConfig: {r: 16}}")
    assert other_config["metadata"]["annotations"][ANNOTATION_JOB_HASH] != base
    template = other_config["spec"]["template"]["metadata"]["annotations"][ANNOTATION_JOB_HASH]
    assert template == other_config["metadata"]["annotations"][ANNOTATION_JOB_HASH]


def test_remote_registries_keep_https_and_volume_output_pushes_nothing() -> None:
    job = job_for(tuning_workspace(output_image="myregistry.azurecr.io/adapters/tune:v1",
                                   input_image="myregistry.azurecr.io/data/set:v1"))
    cts = containers(job)
    assert "--push-image" in cts["tuner"]["command"] and "--push-plain-http" not in cts["tuner"]["command"]
    assert "--plain-http" not in cts["data-puller"]["command"]
    volume_output = containers(job_for(tuning_workspace(output_image=None)))["tuner"]["command"]
    assert not [arg for arg in volume_output if arg.startswith("--push")]


@pytest.mark.parametrize(("image", "loopback"), [
    ("127.0.0.1:5000/a/b:v1", True), ("localhost:5000/a:v1", True), ("[::1]:5000/a:v1", True),
    ("127.3.2.1/a:v1", True), ("10.0.0.1:5000/a:v1", False), ("myregistry.azurecr.io/a:v1", False),
])
def test_loopback_registries_are_detected_by_host(image: str, loopback: bool) -> None:
    assert is_loopback_registry(image) is loopback


def test_gpu_presets_train_the_weights_baked_into_their_image() -> None:
    assert trainer_model_arg(CATALOG.preset("phi-3-mini-4k-instruct"), "0.1.0") == "/workspace/weights"
    assert trainer_model_arg(SMOL, "0.1.0") == "smollm2-135m-instruct"


def test_volume_input_is_mounted_as_the_data_directory_without_a_downloader() -> None:
    wire = tuning_workspace(output_image=None)
    wire["tuning"]["input"] = {"volumeSource": {"persistentVolumeClaim": {"claimName": "datasets"}}}
    job = job_for(wire)
    pod = job["spec"]["template"]["spec"]
    assert set(containers(job)) == {"tuner"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data-volume"]["persistentVolumeClaim"] == {"claimName": "datasets"}
    assert volumes["output-volume"] == {"name": "output-volume", "emptyDir": {}}
    mounts = {m["mountPath"]: m["name"] for m in containers(job)["tuner"]["volumeMounts"]}
    assert mounts[c.DATA_DIR] == "data-volume" and mounts[c.OUTPUT_DIR] == "output-volume"


LOCAL_EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples" / "tuning").glob("smollm2-*-local.yaml"))


@pytest.mark.parametrize("path", LOCAL_EXAMPLES, ids=lambda p: p.name)
def test_a_local_tuning_example_is_admitted_and_trains_briefly_with_its_own_config(path: Path) -> None:
    from kaito.runtime.tuning.config import parse_config
    from kaito.webhook.rules import validate_workspace
    from kaito.webhook.training_config import validate_training_config
    from kaito.workloads import plan_workspace

    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    wire = next(d for d in docs if d["kind"] == "Workspace")
    assert validate_workspace(wire).allowed
    if "tuning" not in wire:  # the serving half of the closed loop
        assert wire["inference"]["adapters"][0]["source"]["image"]
        return
    configs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    tuning = wire["tuning"]
    method = tuning["method"]
    text = configs[tuning["config"]]["data"][c.TUNING_CONFIG_KEY]

    assert validate_training_config(yaml.safe_load(text), method) == []
    parsed = parse_config(yaml.safe_load(text), output_dir=c.OUTPUT_DIR, method=method)  # the tuner's own parser
    assert parsed.training.max_steps <= 10 and parsed.training.use_cpu  # minutes on a laptop CPU, not hours
    assert tuning["input"]["volumeSource"]["configMap"]["name"] in configs  # the bundled dataset
    if "volumeSource" in tuning["output"]:
        assert tuning["output"]["volumeSource"]["persistentVolumeClaim"]["claimName"] in claims
    plan = plan_workspace(parse_workspace({**wire, "metadata": {**wire["metadata"], "namespace": "default"}}),
                          training_config_text=text)
    assert [o["data"][c.TUNING_CONFIG_KEY] for o in plan.objects if o["kind"] == "ConfigMap"] == [text]
