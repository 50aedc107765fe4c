"""Tuning objects of a Workspace: the training-config ConfigMap snapshot and the tuning Job, exactly as the tuning
controller creates them and ``kaito plan`` prints them (issue 8's shape). Pure functions, no I/O.

The Job ``<ws>`` (restartPolicy Never, ``backoffLimit: 0``: a failed run is reported in status and re-runs only
when the spec or the config changes) runs, in order:

1. input init container: URLs → ``python -m kaito.runtime.tuning.download --dest /mnt/data URL...``; image →
   ``python -m kaito.runtime.oci pull IMAGE /mnt/data``; a volume is mounted at ``/mnt/data`` instead;
2. the trainer, the main container ``tuner``: ``python -m kaito.runtime.tuning --config
   /mnt/config/training_config.yaml --data-dir /mnt/data --output-dir /mnt/output --model M --method lora|qlora
   --metrics-port 5000`` (a ``metrics`` container port 5000 for Prometheus). ``M`` is the preset's name for presets
   whose weights kaito-py's own runtime image provides (the CPU preset ``smollm2-135m-instruct``), else the weights
   directory of the preset image (``/workspace/weights``, as the inference StatefulSet uses);
3. for an image output the trainer also pushes: ``--push-image IMAGE [--push-docker-config
   /mnt/push-secret/.dockerconfigjson] --model-name <preset> [--push-plain-http]``. It asks the registry whether the
   ``imagePushSecret`` may push *before* training (a wrong secret fails in seconds, exit 5, not after hours on a
   GPU), and after training pushes only the adapter, ``adapter_config.json`` and ``adapter_model.safetensors``
   (:data:`ADAPTER_FILES`, the files upstream Kaito's ``pusher.sh`` copies; not peft's README.md, not the
   completion marker, no tokenizer: the inference server uses the base model's), with the manifest annotation
   ``sh.kaito.model.name`` = the preset. Upstream runs the push in a separate ``pusher`` container after training
   instead, which learns of a wrong secret only then.

OCI pulls and pushes of a registry on a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``) get
``--plain-http`` / ``--push-plain-http``: Docker treats those registries as insecure (plain HTTP) by default,
and a local ``docker-registry`` (``kaito dev``, tests) speaks only HTTP.

The Job always mounts kaito's ConfigMap ``<ws>-tuning-config`` (:func:`tuning_configmap`): a snapshot of the
user's ``tuning.config`` or of the method's default (``kaito/runtime/tuning/defaults/<method>.yaml``), so the job
reads a config the controller validated and a changed config is detected. The annotation
:data:`ANNOTATION_JOB_HASH` on the Job and its pod template is the digest of the workspace's spec and the config
text (:func:`job_hash`): when it changes, the controller replaces the Job.

Sources: upstream Kaito ``pkg/workspace/tuning/preset_tuning.go`` (ports, tolerations, the
``sh.kaito.model.name`` annotation of the pushed image) and ``pkg/workspace/image/pusher.sh`` (the two adapter
files).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace
from kaito.presets.catalog import ModelPreset
from kaito.runtime.oci import is_loopback_registry as oci_is_loopback_registry
from kaito.runtime.tuning.defaults import default_config_text as packaged_default_config_text
from kaito.workloads.common import (
    GPU_TOLERATIONS,
    RUNTIME_IMAGE,
    node_affinity,
    object_meta,
    pull_secrets,
    runtime_image,
    spec_hash,
)
from kaito.workloads.inference import WEIGHTS_DIR

DATA_VOLUME = "data-volume"
CONFIG_VOLUME = "config-volume"
OUTPUT_VOLUME = "output-volume"
PUSH_SECRET_VOLUME = "push-secret"
TUNER_CONTAINER = "tuner"

ANNOTATION_JOB_HASH = "kaito.sh/tuning-hash"
"""On the tuning Job and its pod template: SHA-256 of the workspace spec hash and the training config text."""
ANNOTATION_CONFIG_SOURCE = "kaito.sh/tuning-config-source"
"""On ``<ws>-tuning-config``: where its content came from (``configmap/<ns>/<name>`` or ``default/<method>``)."""
METRICS_PORT = 5000
"""The tuning runtime's ``--metrics-port`` default (``python -m kaito.runtime.tuning``; upstream's Port5000)."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
"""What is pushed: a peft LoRA adapter (upstream's ``pusher.sh`` copies exactly these two; the runtime pushes
:data:`kaito.runtime.tuning.trainer.ADAPTER_FILES`, the same two)."""
PUSH_SECRET_PATH = "/mnt/push-secret/.dockerconfigjson"
"""Where the trainer reads the ``imagePushSecret`` (a ``kubernetes.io/dockerconfigjson`` Secret)."""


def tuning_config_name(ws: AnyWorkspace) -> str:
    """kaito's ConfigMap for ``ws``'s tuning Job: ``<ws>-tuning-config`` (also when ``tuning.config`` names the
    user's ConfigMap: the Job mounts kaito's snapshot of it)."""
    return f"{ws.name}-tuning-config"


def default_config_text(method: str) -> str:
    """The default ``training_config.yaml`` text for ``method`` ("lora" or "qlora"): the package data
    ``kaito/runtime/tuning/defaults/<method>.yaml`` (upstream's ``lora-params-template`` /
    ``qlora-params-template``), the same text the manifests' template ConfigMaps hold.

    Raises:
        ValueError: another method.
    """
    if method not in ("lora", "qlora"):
        raise ValueError(f"tuning.method: {method!r} is not supported; use lora or qlora")
    return packaged_default_config_text(method)


def default_training_config(method: str) -> dict[str, Any]:
    """The default ``training_config.yaml`` document for ``method`` (:func:`default_config_text`, parsed).

    Raises:
        ValueError: another method.
    """
    doc: dict[str, Any] = yaml.safe_load(default_config_text(method))
    return doc


def tuning_method(ws: AnyWorkspace) -> str:
    """``tuning.method`` of ``ws`` (default ``lora``, as the webhook defaults it)."""
    return (ws.tuning.method if ws.tuning is not None else None) or "lora"


def default_config_source(method: str) -> str:
    """The :data:`ANNOTATION_CONFIG_SOURCE` value of a snapshot of kaito-py's packaged default."""
    return f"default/{method}"


def tuning_configmap(ws: AnyWorkspace, text: str | None = None, source: str | None = None) -> dict[str, Any]:
    """ConfigMap ``<ws>-tuning-config`` with ``training_config.yaml`` = ``text`` (owned by ``ws``).

    Args:
        ws: a tuning workspace.
        text: the config text (default: the method's :func:`default_config_text`).
        source: recorded in :data:`ANNOTATION_CONFIG_SOURCE` (default: ``configmap/<ns>/<tuning.config>`` when the
            workspace names a ConfigMap, else ``default/<method>``).

    Raises:
        ValueError: ``ws`` has no tuning section.
    """
    if ws.tuning is None:
        raise ValueError("tuning: the workspace has no tuning section")
    method = tuning_method(ws)
    if source is None:
        source = f"configmap/{ws.namespace}/{ws.tuning.config}" if ws.tuning.config else default_config_source(method)
    meta = object_meta(ws, tuning_config_name(ws))
    meta["annotations"] = {ANNOTATION_CONFIG_SOURCE: source}
    data = {c.TUNING_CONFIG_KEY: text if text is not None else default_config_text(method)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def job_hash(ws: AnyWorkspace, config_text: str) -> str:
    """SHA-256 hex over the workspace's spec hash and the training config text (what makes a new run)."""
    body = json.dumps({"spec": spec_hash(ws), "config": config_text}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def is_loopback_registry(image: str) -> bool:
    """True when ``image``'s registry host is ``localhost`` or a loopback IP (plain-HTTP registries by Docker's
    default ``insecure-registries`` rule: ``127.0.0.0/8``, ``::1``); the rule is the runtime's own
    (:func:`kaito.runtime.oci.is_loopback_registry`), so the Job and the pusher agree."""
    return oci_is_loopback_registry(image.split("/", 1)[0] if "/" in image else "")


def trainer_model_arg(preset: ModelPreset, version: str) -> str:
    """``--model`` of the trainer: the preset's name when kaito-py's runtime image provides its weights (the CPU
    preset), else :data:`~kaito.workloads.inference.WEIGHTS_DIR` inside the preset's image."""
    own_image = RUNTIME_IMAGE.split(":", 1)[0]
    return preset.name if preset.image_for(version).split(":", 1)[0] == own_image else WEIGHTS_DIR


def output_description(ws: AnyWorkspace) -> str:
    """Where the adapter goes, for messages: ``image <ref>`` or ``the output volume``."""
    out = ws.tuning.output if ws.tuning is not None else None
    if out is not None and out.image:
        return f"image {out.image}"
    return "the output volume"


def tuning_job(
    ws: AnyWorkspace,
    preset: ModelPreset,
    *,
    gpus_per_node: int,
    version: str,
    config_text: str | None = None,
) -> dict[str, Any]:
    """The tuning Job ``<ws>`` (see the module docstring for its containers, paths and annotations).

    Args:
        ws: a tuning workspace admitted by the webhook.
        preset: the catalog preset of ``tuning.preset``.
        gpus_per_node: GPUs the trainer requests (GPU presets only; 0 requests none).
        version: kaito-py version for its own images (runtime, downloader, OCI tools).
        config_text: the training config in ``<ws>-tuning-config`` (default: the method's default), hashed into
            :data:`ANNOTATION_JOB_HASH`.

    Raises:
        ValueError: ``ws`` has no tuning section, or its input/output has no source (the webhook rejects both).
    """
    tuning = ws.tuning
    if tuning is None or tuning.input is None or tuning.output is None:
        raise ValueError("tuning: set tuning.input and tuning.output")
    method = tuning_method(ws)
    if config_text is None:
        config_text = default_config_text(method)
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
            if is_loopback_registry(source.image):
                command.append("--plain-http")
            inits.append({"name": "data-puller", "image": tools, "command": command, "volumeMounts": mounts})
    if tuning.output.volume_source:
        volumes.append({"name": OUTPUT_VOLUME, **tuning.output.volume_source})
    else:
        volumes.append({"name": OUTPUT_VOLUME, "emptyDir": {}})
    tuner: dict[str, Any] = {
        "name": TUNER_CONTAINER,
        "image": image,
        "command": [
            "python", "-m", "kaito.runtime.tuning",
            "--config", f"{c.CONFIG_DIR}/{c.TUNING_CONFIG_KEY}",
            "--data-dir", c.DATA_DIR,
            "--output-dir", c.OUTPUT_DIR,
            "--model", trainer_model_arg(preset, version),
            "--method", method,
            "--metrics-port", str(METRICS_PORT),
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "KAITO_PRESET", "value": preset.name},
            {"name": "KAITO_TUNING_METHOD", "value": method},
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
    if tuning.output.image:
        tuner["command"] += ["--push-image", tuning.output.image]
        if tuning.output.image_push_secret:
            volumes.append({"name": PUSH_SECRET_VOLUME, "secret": {"secretName": tuning.output.image_push_secret}})
            tuner["volumeMounts"].append({"name": PUSH_SECRET_VOLUME, "mountPath": PUSH_SECRET_PATH.rsplit("/", 1)[0],
                                          "readOnly": True})
            tuner["command"] += ["--push-docker-config", PUSH_SECRET_PATH]
        tuner["command"] += ["--model-name", preset.name]
        if is_loopback_registry(tuning.output.image):
            tuner["command"].append("--push-plain-http")
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
    annotations = {c.ANNOTATION_HASH: spec_hash(ws), ANNOTATION_JOB_HASH: job_hash(ws, config_text)}
    labels = {c.LABEL_WORKSPACE_NAME: ws.name, c.LABEL_WORKSPACE_NAMESPACE: ws.namespace}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {**object_meta(ws, ws.name), "annotations": dict(annotations)},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels, "annotations": dict(annotations)}, "spec": pod_spec},
        },
    }
