"""The tuning controller's desired objects: the effective training-config ConfigMap and the tuning Job.

Pure functions (no I/O). They start from :mod:`kaito.workloads.tuning`'s builders and adjust the Job to what
:mod:`kaito.runtime` accepts:

- the trainer gets ``--model``: the preset's name for presets kaito-py's own runtime image provides (the CPU
  preset ``smollm2-135m-instruct``, resolved by :func:`kaito.runtime.tuning.trainer.resolve_model`), otherwise
  the weights directory of preset images (``/workspace/weights``, as the inference StatefulSet uses);
  ``--method`` carries ``tuning.method`` so the runtime rejects a config that does not fit it; a ``metrics``
  container port (5000, the runtime's ``--metrics-port`` default) for Prometheus;
- OCI pulls and pushes of a registry on a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``) get
  ``--plain-http``: Docker treats those registries as insecure (plain HTTP) by default, and a local
  ``docker-registry`` (``kaito dev``, tests) speaks only HTTP;
- the Job always mounts kaito's ConfigMap ``<ws>-tuning-config``, a copy of the user's ``tuning.config`` or of
  the method's default, so the job reads a snapshot that the controller validated, and a changed config is
  detected by its digest;
- the annotation :data:`ANNOTATION_JOB_HASH` holds the digest of the workspace's spec and the config: when it
  changes, the controller replaces the Job (a changed spec re-runs the tuning).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from typing import Any

import yaml

from kaito.api import constants as c
from kaito.api.workspace import AnyWorkspace
from kaito.presets.catalog import ModelPreset
from kaito.workloads import spec_hash, tuning_job
from kaito.workloads.common import RUNTIME_IMAGE, object_meta
from kaito.workloads.inference import WEIGHTS_DIR
from kaito.workloads.tuning import CONFIG_VOLUME, PUSHER_CONTAINER, TUNER_CONTAINER

ANNOTATION_JOB_HASH = "kaito.sh/tuning-hash"
"""On the tuning Job: SHA-256 of the workspace spec hash and the training config text (see module docstring)."""
ANNOTATION_CONFIG_SOURCE = "kaito.sh/tuning-config-source"
"""On ``<ws>-tuning-config``: where its content came from (``configmap/<ns>/<name>`` or ``default/<method>``)."""
METRICS_PORT = 5000
"""The tuning runtime's ``--metrics-port`` default (``python -m kaito.runtime.tuning``)."""


def config_name(ws: AnyWorkspace) -> str:
    """kaito's ConfigMap for ``ws``'s tuning job: ``<ws>-tuning-config``."""
    return f"{ws.name}-tuning-config"


def config_configmap(ws: AnyWorkspace, text: str, source: str) -> dict[str, Any]:
    """ConfigMap ``<ws>-tuning-config`` with ``training_config.yaml`` = ``text`` (owned by ``ws``).

    ``source`` is recorded in the :data:`ANNOTATION_CONFIG_SOURCE` annotation.
    """
    meta = object_meta(ws, config_name(ws))
    meta["annotations"] = {ANNOTATION_CONFIG_SOURCE: source}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {c.TUNING_CONFIG_KEY: text}}


def job_hash(ws: AnyWorkspace, config_text: str) -> str:
    """SHA-256 hex over the workspace's spec hash and the training config text (what makes a new run)."""
    body = json.dumps({"spec": spec_hash(ws), "config": config_text}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def is_loopback_registry(image: str) -> bool:
    """True when ``image``'s registry host is ``localhost`` or a loopback IP (plain-HTTP registries by Docker's
    default ``insecure-registries`` rule: ``127.0.0.0/8``)."""
    host = image.split("/", 1)[0] if "/" in image else ""
    if host.startswith("["):  # [::1]:5000
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def trainer_model_arg(preset: ModelPreset, version: str) -> str:
    """``--model`` of the trainer: the preset's name when kaito-py's runtime image provides its weights (the CPU
    preset), else :data:`~kaito.workloads.inference.WEIGHTS_DIR` inside the preset's image."""
    own_image = RUNTIME_IMAGE.split(":", 1)[0]
    return preset.name if preset.image_for(version).split(":", 1)[0] == own_image else WEIGHTS_DIR


def desired_job(
    ws: AnyWorkspace, preset: ModelPreset, config_text: str, *, gpus_per_node: int, version: str
) -> dict[str, Any]:
    """The tuning Job ``<ws>``: :func:`kaito.workloads.tuning_job` adjusted as the module docstring says.

    Raises:
        ValueError: ``ws`` has no tuning section, input or output (the webhook rejects these).
    """
    job = copy.deepcopy(tuning_job(ws, preset, gpus_per_node=gpus_per_node, version=version))
    pod = job["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if volume["name"] == CONFIG_VOLUME:
            volume["configMap"] = {"name": config_name(ws)}
    method = (ws.tuning.method if ws.tuning is not None else None) or "lora"
    for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
        command: list[str] = container["command"]
        if container["name"] == TUNER_CONTAINER:
            command += ["--model", trainer_model_arg(preset, version), "--method", method,
                        "--metrics-port", str(METRICS_PORT)]
            container["ports"] = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
        elif command[:3] == ["python", "-m", "kaito.runtime.oci"] and "--plain-http" not in command:
            image = command[4] if command[3] == "pull" else command[5]
            if is_loopback_registry(image):
                command.append("--plain-http")
    digest = job_hash(ws, config_text)
    job["metadata"]["annotations"][ANNOTATION_JOB_HASH] = digest
    job["spec"]["template"]["metadata"]["annotations"][ANNOTATION_JOB_HASH] = digest
    return job


def output_description(ws: AnyWorkspace) -> str:
    """Where the adapter goes, for messages: ``image <ref>`` or ``the output volume``."""
    out = ws.tuning.output if ws.tuning is not None else None
    if out is not None and out.image:
        return f"image {out.image}"
    return "the output volume"


def parse_config_text(text: str) -> Any:
    """The YAML document of a ``training_config.yaml``.

    Raises:
        ValueError: not valid YAML, with the parser's line and column.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"training_config.yaml is not valid YAML: {exc}") from None


__all__ = [
    "ANNOTATION_CONFIG_SOURCE",
    "ANNOTATION_JOB_HASH",
    "METRICS_PORT",
    "PUSHER_CONTAINER",
    "TUNER_CONTAINER",
    "config_configmap",
    "config_name",
    "desired_job",
    "is_loopback_registry",
    "job_hash",
    "output_description",
    "parse_config_text",
    "trainer_model_arg",
]
