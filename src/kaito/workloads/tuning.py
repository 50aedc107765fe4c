"""Tuning objects of a Workspace: the training-config ConfigMap and the tuning Job (issue 8's shape).

The Job ``<ws>`` (restartPolicy Never, no retries: a failed run is reported in status and re-runs when the spec
changes) runs, in order:

1. input init container: URLs → ``python -m kaito.runtime.tuning.download --dest /mnt/data URL...``; image →
   ``python -m kaito.runtime.oci pull IMAGE /mnt/data``; a volume is mounted at ``/mnt/data`` instead;
2. the trainer ``python -m kaito.runtime.tuning --config /mnt/config/training_config.yaml --data-dir /mnt/data
   --output-dir /mnt/output`` (a main container, or the last init container when the output is pushed);
3. for an image output, the main container ``pusher``: ``python -m kaito.runtime.oci push /mnt/output IMAGE
   --docker-config /mnt/push-secret/.dockerconfigjson --model-name <preset>``.
"""

from __future__ import annotations

from typing import Any

import yaml

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace
from kaito.presets.catalog import ModelPreset
from kaito.workloads.common import GPU_TOLERATIONS, node_affinity, object_meta, pull_secrets, runtime_image, spec_hash

DATA_VOLUME = "data-volume"
CONFIG_VOLUME = "config-volume"
OUTPUT_VOLUME = "output-volume"
PUSH_SECRET_VOLUME = "push-secret"
TUNER_CONTAINER = "tuner"
PUSHER_CONTAINER = "pusher"


def tuning_config_name(ws: AnyWorkspace) -> str:
    """The ConfigMap the Job mounts: ``tuning.config`` if set, else kaito's ``<ws>-tuning-config``."""
    if ws.tuning is not None and ws.tuning.config:
        return ws.tuning.config
    return f"{ws.name}-tuning-config"


def default_training_config(method: str) -> dict[str, Any]:
    """The default ``training_config.yaml`` document for ``method`` ("lora" or "qlora").

    LoRA r=8, alpha=8, dropout 0 (upstream defaults); qlora adds 4-bit nf4 with double quantisation and bf16
    compute (upstream); output under ``/mnt/output`` (rule 7 requires ``output_dir`` under ``/mnt``).

    Raises:
        ValueError: another method.
    """
    if method not in ("lora", "qlora"):
        raise ValueError(f"tuning.method: {method!r} is not supported; use lora or qlora")
    sections: dict[str, Any] = {
        "ModelConfig": {"torch_dtype": "bfloat16", "local_files_only": True},
        "LoraConfig": {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0},
        "TrainingArguments": {
            "output_dir": c.OUTPUT_DIR,
            "num_train_epochs": 1,
            "per_device_train_batch_size": 1,
            "learning_rate": 0.0002,
            "save_strategy": "no",
            "report_to": "none",
        },
        "DatasetConfig": {"shuffle_dataset": True, "train_test_split": 1.0},
        "DataCollator": {"mlm": False},
    }
    if method == "qlora":
        sections["QuantizationConfig"] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": "bfloat16",
            "bnb_4bit_use_double_quant": True,
        }
    return {"training_config": sections}


def tuning_configmap(ws: AnyWorkspace, training_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """ConfigMap ``<ws>-tuning-config`` holding ``training_config.yaml`` (default: the method's defaults).

    Raises:
        ValueError: ``ws`` has no tuning section.
    """
    if ws.tuning is None:
        raise ValueError("tuning: the workspace has no tuning section")
    doc = training_config if training_config is not None else default_training_config(ws.tuning.method or "lora")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(ws, tuning_config_name(ws)),
        "data": {c.TUNING_CONFIG_KEY: yaml.safe_dump(doc, sort_keys=False)},
    }


def tuning_job(ws: AnyWorkspace, preset: ModelPreset, *, gpus_per_node: int, version: str) -> dict[str, Any]:
    """The tuning Job ``<ws>`` (see the module docstring for its containers and paths).

    Raises:
        ValueError: ``ws`` has no tuning section, or its input/output has no source (the webhook rejects both).
    """
    tuning = ws.tuning
    if tuning is None or tuning.input is None or tuning.output is None:
        raise ValueError("tuning: set tuning.input and tuning.output")
    tools = runtime_image(version)
    image = preset.image_for(version)
    secrets: list[str] = []
    if tuning.preset is not None and tuning.preset.preset_options is not None:
        if tuning.preset.access_mode == "private" and tuning.preset.preset_options.image:
            image = tuning.preset.preset_options.image
        secrets += tuning.preset.preset_options.image_pull_secrets or []
    volumes: list[dict[str, Any]] = [{"name": CONFIG_VOLUME, "configMap": {"name": tuning_config_name(ws)}}]
    data_mount: dict[str, Any] = {"name": DATA_VOLUME, "mountPath": c.DATA_DIR}
    output_mount: dict[str, Any] = {"name": OUTPUT_VOLUME, "mountPath": c.OUTPUT_DIR}
    inits: list[dict[str, Any]] = []
    source = tuning.input
    if source.volume_source:
        volumes.append({"name": DATA_VOLUME, **source.volume_source})
    else:
        volumes.append({"name": DATA_VOLUME, "emptyDir": {}})
        if source.urls:
            command = ["python", "-m", "kaito.runtime.tuning.download", "--dest", c.DATA_DIR, *source.urls]
            inits.append({"name": "data-downloader", "image": tools, "command": command, "volumeMounts": [data_mount]})
        elif source.image:
            command = ["python", "-m", "kaito.runtime.oci", "pull", source.image, c.DATA_DIR]
            mounts: list[dict[str, Any]] = [data_mount]
            for secret in source.image_pull_secrets or []:
                vol = f"pull-secret-{secret}"
                volumes.append({"name": vol, "secret": {"secretName": secret}})
                mounts.append({"name": vol, "mountPath": f"/mnt/secrets/{secret}", "readOnly": True})
                command += ["--docker-config", f"/mnt/secrets/{secret}/.dockerconfigjson"]
            inits.append({"name": "data-puller", "image": tools, "command": command, "volumeMounts": mounts})
    if tuning.output.volume_source:
        volumes.append({"name": OUTPUT_VOLUME, **tuning.output.volume_source})
    else:
        volumes.append({"name": OUTPUT_VOLUME, "emptyDir": {}})
    tuner: dict[str, Any] = {
        "name": TUNER_CONTAINER,
        "image": image,
        "command": [
            "python",
            "-m",
            "kaito.runtime.tuning",
            "--config",
            f"{c.CONFIG_DIR}/{c.TUNING_CONFIG_KEY}",
            "--data-dir",
            c.DATA_DIR,
            "--output-dir",
            c.OUTPUT_DIR,
        ],
        "env": [
            {"name": "KAITO_PRESET", "value": preset.name},
            {"name": "KAITO_TUNING_METHOD", "value": tuning.method or "lora"},
        ],
        "volumeMounts": [
            data_mount,
            {"name": CONFIG_VOLUME, "mountPath": c.CONFIG_DIR, "readOnly": True},
            output_mount,
        ],
    }
    if preset.requires_gpu and gpus_per_node > 0:
        gpus = str(gpus_per_node)
        tuner["resources"] = {"requests": {c.RESOURCE_GPU: gpus}, "limits": {c.RESOURCE_GPU: gpus}}
    containers: list[dict[str, Any]]
    if tuning.output.image:
        inits.append(tuner)
        command = ["python", "-m", "kaito.runtime.oci", "push", c.OUTPUT_DIR, tuning.output.image]
        mounts = [output_mount]
        if tuning.output.image_push_secret:
            volumes.append({"name": PUSH_SECRET_VOLUME, "secret": {"secretName": tuning.output.image_push_secret}})
            mounts.append({"name": PUSH_SECRET_VOLUME, "mountPath": "/mnt/push-secret", "readOnly": True})
            command += ["--docker-config", "/mnt/push-secret/.dockerconfigjson"]
        command += ["--model-name", preset.name]
        containers = [{"name": PUSHER_CONTAINER, "image": tools, "command": command, "volumeMounts": mounts}]
    else:
        containers = [tuner]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": containers,
        "volumes": volumes,
        "tolerations": list(GPU_TOLERATIONS),
    }
    if inits:
        pod_spec["initContainers"] = inits
    if secrets:
        pod_spec["imagePullSecrets"] = pull_secrets(secrets)
    affinity = node_affinity(ws.resource.label_selector.to_wire())
    if affinity is not None:
        pod_spec["affinity"] = affinity
    annotations = {c.ANNOTATION_HASH: spec_hash(ws)}
    labels = {c.LABEL_WORKSPACE_NAME: ws.name, c.LABEL_WORKSPACE_NAMESPACE: ws.namespace}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {**object_meta(ws, ws.name), "annotations": dict(annotations)},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }
