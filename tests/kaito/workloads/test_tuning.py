"""Tuning builders: the Job's init containers, trainer, pusher and volumes for each input/output kind."""

from __future__ import annotations

from typing import Any

import yaml

from kaito.api import parse_workspace
from kaito.presets import load_catalog
from kaito.workloads import default_training_config, tuning_configmap, tuning_job
from tests.kaito.api.builders import edit, tuning_ws

PRESET = load_catalog().preset("phi-3-mini-4k-instruct")


def _job(obj: dict[str, Any]) -> dict[str, Any]:
    return tuning_job(parse_workspace(obj), PRESET, gpus_per_node=1, version="9.9.9")


def _names(containers: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in containers]


def test_url_input_and_image_output_download_train_then_push() -> None:
    job = _job(tuning_ws())
    pod = job["spec"]["template"]["spec"]

    assert job["metadata"]["name"] == "tune" and job["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    assert _names(pod["initContainers"]) == ["data-downloader", "tuner"]
    assert pod["initContainers"][0]["command"] == [
        "python", "-m", "kaito.runtime.tuning.download", "--dest", "/mnt/data", "https://example.com/data.parquet",
    ]  # fmt: skip
    tuner = pod["initContainers"][1]
    assert tuner["image"] == PRESET.image
    assert tuner["command"] == [
        "python", "-m", "kaito.runtime.tuning", "--config", "/mnt/config/training_config.yaml",
        "--data-dir", "/mnt/data", "--output-dir", "/mnt/output",
    ]  # fmt: skip
    assert tuner["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert pod["containers"] == [
        {
            "name": "pusher",
            "image": "kaito-py/runtime-cpu:9.9.9",
            "command": [
                "python", "-m", "kaito.runtime.oci", "push", "/mnt/output", "registry.example.com/adapters/a:0.1",
                "--docker-config", "/mnt/push-secret/.dockerconfigjson", "--model-name", "phi-3-mini-4k-instruct",
            ],
            "volumeMounts": [
                {"name": "output-volume", "mountPath": "/mnt/output"},
                {"name": "push-secret", "mountPath": "/mnt/push-secret", "readOnly": True},
            ],
        }
    ]  # fmt: skip
    assert {"name": "push-secret", "secret": {"secretName": "push-secret"}} in pod["volumes"]
    assert {"name": "config-volume", "configMap": {"name": "tune-tuning-config"}} in pod["volumes"]


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


def test_default_configmap_holds_the_methods_config() -> None:
    cm = tuning_configmap(parse_workspace(tuning_ws(method="qlora")))

    doc = yaml.safe_load(cm["data"]["training_config.yaml"])
    assert cm["metadata"]["name"] == "tune-tuning-config"
    assert doc == default_training_config("qlora")
    assert doc["training_config"]["QuantizationConfig"]["load_in_4bit"] is True
    assert "QuantizationConfig" not in default_training_config("lora")["training_config"]


def test_users_config_is_mounted_instead_of_the_default() -> None:
    pod = _job(edit(tuning_ws(), "tuning.config", "my-config"))["spec"]["template"]["spec"]

    assert {"name": "config-volume", "configMap": {"name": "my-config"}} in pod["volumes"]
