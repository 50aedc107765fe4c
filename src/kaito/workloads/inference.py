"""Inference objects of a Workspace: Service, headless Service, the inference ConfigMap and the StatefulSet.

Pure functions from (Workspace, preset, sizes) to plain dicts, compared by tests as dicts. The contract with the
runtime (``kaito.runtime.inference``): it listens on port 5000, answers ``GET /health``, loads adapters from
``/mnt/adapter/<name>`` with the strength in env ``<name>``, and reads ``/mnt/config/inference_config.yaml``.
"""

from __future__ import annotations

from typing import Any

import yaml

from kaito.api import constants as c
from kaito.api.workspace import AdapterSpec, AnyWorkspace
from kaito.presets.catalog import ModelPreset
from kaito.presets.estimator import Estimate
from kaito.workloads.common import (
    GPU_TOLERATIONS,
    node_affinity,
    object_meta,
    pull_secrets,
    runtime_image,
    spec_hash,
)

WEIGHTS_DIR = "/workspace/weights"
"""Where preset images keep the model weights."""
INFERENCE_CONTAINER = "inference"
ADAPTER_VOLUME = "adapter-volume"
CONFIG_VOLUME = "config-volume"
SHM_VOLUME = "dshm"
STARTUP_PROBE_FAILURES = 360
"""startupProbe failureThreshold × 5 s period = 30 min for a large model to load before the pod restarts."""


POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
"""The label the StatefulSet controller puts on each pod with its ordinal (Kubernetes 1.28+, PodIndexLabel)."""


def headless_service_name(ws: AnyWorkspace) -> str:
    """``<ws>-headless``."""
    return f"{ws.name}-headless"


def inference_config_name(ws: AnyWorkspace) -> str:
    """The ConfigMap the pods mount: ``inference.config`` if set, else kaito's ``<ws>-inference-config``."""
    if ws.inference is not None and ws.inference.config:
        return ws.inference.config
    return f"{ws.name}-inference-config"


def _pod_selector(ws: AnyWorkspace) -> dict[str, str]:
    return {c.LABEL_WORKSPACE_NAME: ws.name}


def inference_service(ws: AnyWorkspace, *, node_count: int) -> dict[str, Any]:
    """Service ``<ws>``: port 80 → 5000 and 29500 (torch distributed rendezvous, as in the seed's ``kubectl get
    svc``: ``80/TCP,29500/TCP``); LoadBalancer when annotation ``kaito.sh/enablelb`` is "true" (any case).

    With several nodes the Service selects only pod ``<ws>-0`` (the leader that serves HTTP).
    """
    annotations = ws.metadata.annotations or {}
    lb = annotations.get(c.ANNOTATION_ENABLE_LB, "").lower() == "true"
    selector = _pod_selector(ws)
    if node_count > 1:
        selector = {**selector, "statefulset.kubernetes.io/pod-name": f"{ws.name}-0"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ws, ws.name),
        "spec": {
            "type": "LoadBalancer" if lb else "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "protocol": "TCP", "port": c.SERVICE_PORT, "targetPort": c.RUNTIME_PORT},
                {"name": "torchrun", "protocol": "TCP", "port": c.TORCHRUN_PORT, "targetPort": c.TORCHRUN_PORT},
            ],
        },
    }


def headless_service(ws: AnyWorkspace) -> dict[str, Any]:
    """Service ``<ws>-headless`` (clusterIP None, not-ready addresses published) for multi-node pod DNS."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ws, headless_service_name(ws)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": _pod_selector(ws),
            "ports": [
                {"name": "http", "protocol": "TCP", "port": c.RUNTIME_PORT, "targetPort": c.RUNTIME_PORT},
                {"name": "torchrun", "protocol": "TCP", "port": c.TORCHRUN_PORT, "targetPort": c.TORCHRUN_PORT},
            ],
        },
    }


def inference_configmap(
    ws: AnyWorkspace, preset: ModelPreset, estimate: Estimate, *, node_count: int
) -> dict[str, Any]:
    """ConfigMap ``<ws>-inference-config`` with ``inference_config.yaml`` (preset, context length, parallelism).

    Not built when the user names their own ConfigMap in ``inference.config``.
    """
    config = {
        "preset": preset.name,
        "max_model_len": estimate.max_model_len,
        "tensor_parallel_size": estimate.tensor_parallel_size,
        "pipeline_parallel_size": max(node_count, estimate.pipeline_parallel_size),
        "node_count": node_count,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(ws, inference_config_name(ws)),
        "data": {c.INFERENCE_CONFIG_KEY: yaml.safe_dump(config, sort_keys=False)},
    }


def _adapter_parts(
    adapters: list[AdapterSpec], version: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(init containers, volumes, inference mounts, env, pull secrets) for the adapters."""
    inits: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [{"name": ADAPTER_VOLUME, "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": ADAPTER_VOLUME, "mountPath": c.ADAPTER_DIR}]
    env: list[dict[str, Any]] = []
    secrets: list[str] = []
    for i, adapter in enumerate(adapters):
        name = adapter.source.name or f"adapter-{i}"
        target = f"{c.ADAPTER_DIR}/{name}"
        env.append({"name": name, "value": adapter.strength or "1.0"})
        if adapter.source.image:
            command = ["python", "-m", "kaito.runtime.oci", "pull", adapter.source.image, target]
            init_mounts: list[dict[str, Any]] = [{"name": ADAPTER_VOLUME, "mountPath": c.ADAPTER_DIR}]
            for secret in adapter.source.image_pull_secrets or []:
                secrets.append(secret)
                vol = f"pull-secret-{secret}"
                if not any(v["name"] == vol for v in volumes):
                    volumes.append({"name": vol, "secret": {"secretName": secret}})
                init_mounts.append({"name": vol, "mountPath": f"/mnt/secrets/{secret}", "readOnly": True})
                command += ["--docker-config", f"/mnt/secrets/{secret}/.dockerconfigjson"]
            inits.append(
                {
                    "name": f"adapter-{name}",
                    "image": runtime_image(version),
                    "command": command,
                    "volumeMounts": init_mounts,
                }
            )
        elif adapter.source.volume_source:
            vol = f"adapter-{name}"
            volumes.append({"name": vol, **adapter.source.volume_source})
            mounts.append({"name": vol, "mountPath": target, "readOnly": True})
    return inits, volumes, mounts, env, secrets


def _probes() -> dict[str, Any]:
    get = {"httpGet": {"path": c.HEALTH_PATH, "port": c.RUNTIME_PORT}}
    return {
        "startupProbe": {**get, "periodSeconds": 5, "failureThreshold": STARTUP_PROBE_FAILURES},
        "readinessProbe": {**get, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**get, "periodSeconds": 10, "failureThreshold": 3},
    }


def preset_container(
    ws: AnyWorkspace, preset: ModelPreset, *, gpus_per_node: int, version: str
) -> tuple[dict[str, Any], list[str]]:
    """The inference container for ``preset`` (image, command, port, GPU requests, probes) and its pull secrets.

    Image: the preset's (CPU preset: ``kaito-py/runtime-cpu:<version>``), or ``presetOptions.image`` with
    ``accessMode: private``. GPU presets request = limit = ``gpus_per_node`` ``nvidia.com/gpu``.
    """
    spec = ws.inference.preset if ws.inference is not None else None
    secrets: list[str] = []
    image = preset.image_for(version)
    if spec is not None and spec.preset_options is not None:
        if spec.access_mode == "private" and spec.preset_options.image:
            image = spec.preset_options.image
        secrets = list(spec.preset_options.image_pull_secrets or [])
    if preset.command:
        command = list(preset.command)
    else:
        command = ["python", "-m", "kaito.runtime.inference", "--model-dir", WEIGHTS_DIR, "--port", str(c.RUNTIME_PORT)]
    container: dict[str, Any] = {
        "name": INFERENCE_CONTAINER,
        "image": image,
        "command": command,
        "ports": [{"name": "http", "containerPort": c.RUNTIME_PORT, "protocol": "TCP"}],
        **_probes(),
    }
    if preset.requires_gpu and gpus_per_node > 0:
        gpus = str(gpus_per_node)
        container["resources"] = {"requests": {c.RESOURCE_GPU: gpus}, "limits": {c.RESOURCE_GPU: gpus}}
    return container, secrets


def inference_statefulset(
    ws: AnyWorkspace,
    preset: ModelPreset | None,
    *,
    node_count: int,
    gpus_per_node: int,
    estimate: Estimate | None,
    version: str,
) -> dict[str, Any]:
    """StatefulSet ``<ws>``: ``node_count`` replicas (one pod per node), the preset's runtime or the user's
    ``inference.template``, tolerations, node affinity from ``resource.labelSelector``, adapters, config.

    Args:
        ws: the workspace (must have ``inference``).
        preset: the catalog preset; None for ``inference.template`` workspaces.
        node_count: replicas (the target node count).
        gpus_per_node: GPUs each pod requests (the SKU's or the BYO nodes' GPU count).
        estimate: parallelism for the env; None for template workspaces.
        version: kaito-py version for kaito's own images.

    Raises:
        ValueError: ``ws`` has no inference, or neither preset nor template is given.
    """
    if ws.inference is None:
        raise ValueError("inference: the workspace has no inference section; build the tuning Job instead")
    labels = {c.LABEL_WORKSPACE_NAME: ws.name, c.LABEL_WORKSPACE_NAMESPACE: ws.namespace}
    annotations = {c.ANNOTATION_HASH: spec_hash(ws)}
    affinity = node_affinity(ws.resource.label_selector.to_wire())
    if preset is not None:
        container, secrets = preset_container(ws, preset, gpus_per_node=gpus_per_node, version=version)
        inits, volumes, mounts, env, adapter_secrets = _adapter_parts(ws.inference.adapters or [], version)
        secrets += adapter_secrets
        env = [{"name": "KAITO_PRESET", "value": preset.name}, *env]
        if estimate is not None:
            env += [
                {"name": "KAITO_MAX_MODEL_LEN", "value": str(estimate.max_model_len)},
                {"name": "KAITO_TENSOR_PARALLEL_SIZE", "value": str(estimate.tensor_parallel_size)},
                {"name": "KAITO_PIPELINE_PARALLEL_SIZE", "value": str(node_count)},
            ]
        env.append({"name": "KAITO_NODE_COUNT", "value": str(node_count)})
        if node_count > 1:
            leader = f"{ws.name}-0.{headless_service_name(ws)}.{ws.namespace}.svc.cluster.local"
            env.append({"name": "KAITO_LEADER_ADDRESS", "value": leader})
            # each pod's rank: the StatefulSet's pod-index label (Kubernetes >= 1.28); the runtime refuses a
            # non-zero rank with a clear message until multi-node serving exists (kaito.runtime.inference.config)
            env.append({"name": "POD_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}}})
        volumes.append({"name": CONFIG_VOLUME, "configMap": {"name": inference_config_name(ws)}})
        mounts.append({"name": CONFIG_VOLUME, "mountPath": c.CONFIG_DIR, "readOnly": True})
        if preset.requires_gpu:
            volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}})
            mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
        container["env"] = env
        container["volumeMounts"] = mounts
        pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
        if inits:
            pod_spec["initContainers"] = inits
        if secrets:
            pod_spec["imagePullSecrets"] = pull_secrets(secrets)
        template_meta: dict[str, Any] = {"labels": dict(labels), "annotations": annotations}
    elif ws.inference.template is not None:
        user = ws.inference.template
        pod_spec = dict(user.get("spec") or {})
        user_meta = dict(user.get("metadata") or {})
        template_meta = {
            **user_meta,
            "labels": {**(user_meta.get("labels") or {}), **labels},
            "annotations": {**(user_meta.get("annotations") or {}), **annotations},
        }
    else:
        raise ValueError("inference: set inference.preset or inference.template")
    pod_spec["tolerations"] = [*(pod_spec.get("tolerations") or []), *GPU_TOLERATIONS]
    if affinity is not None and "affinity" not in pod_spec:
        pod_spec["affinity"] = affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {**object_meta(ws, ws.name), "annotations": dict(annotations)},
        "spec": {
            "replicas": node_count,
            "podManagementPolicy": "Parallel",
            "serviceName": headless_service_name(ws),
            "selector": {"matchLabels": _pod_selector(ws)},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }
