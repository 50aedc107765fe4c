"""Inference builders: Service, headless Service, ConfigMap and StatefulSet dicts for presets, adapters and
templates, compared as dicts."""

from __future__ import annotations

from typing import Any

import yaml

from kaito.api import parse_workspace
from kaito.presets import estimate, load_catalog
from kaito.workloads import (
    GPU_TOLERATIONS,
    headless_service,
    inference_configmap,
    inference_service,
    inference_statefulset,
    spec_hash,
)
from tests.kaito.api.builders import DELETE, SEED_EXAMPLES, edit, inference_ws, load

CATALOG = load_catalog()
LABELS = {"kaito.sh/workspace": "ws", "kaito.sh/workspacenamespace": "default"}


def _sts(obj: dict[str, Any], node_count: int = 1, gpus: int = 1) -> dict[str, Any]:
    ws = parse_workspace(obj)
    preset_spec = ws.inference.preset if ws.inference else None
    preset = CATALOG.preset(preset_spec.name) if preset_spec else None
    sku = CATALOG.find_sku(ws.resource.instance_type)
    est = estimate(preset, sku) if preset and sku else None
    return inference_statefulset(ws, preset, node_count=node_count, gpus_per_node=gpus, estimate=est, version="9.9.9")


def _container(sts: dict[str, Any]) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_service_maps_port_80_to_the_runtime_port() -> None:
    svc = inference_service(parse_workspace(inference_ws()), node_count=1)

    assert svc == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ws", "namespace": "default", "labels": LABELS},
        "spec": {
            "type": "ClusterIP",
            "selector": {"kaito.sh/workspace": "ws"},
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 5000},
                {"name": "torchrun", "protocol": "TCP", "port": 29500, "targetPort": 29500},
            ],
        },
    }


def test_enablelb_annotation_makes_a_load_balancer_and_multi_node_selects_the_leader() -> None:
    ws = parse_workspace(edit(inference_ws(), "metadata.annotations", {"kaito.sh/enablelb": "True"}))

    svc = inference_service(ws, node_count=2)

    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["selector"] == {"kaito.sh/workspace": "ws", "statefulset.kubernetes.io/pod-name": "ws-0"}


def test_headless_service_publishes_not_ready_pods() -> None:
    svc = headless_service(parse_workspace(inference_ws()))

    assert svc["metadata"]["name"] == "ws-headless"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True


def test_owned_objects_carry_a_controller_owner_reference_when_the_workspace_has_a_uid() -> None:
    ws = parse_workspace(edit(inference_ws(), "metadata.uid", "uid-123"))

    refs = inference_service(ws, node_count=1)["metadata"]["ownerReferences"]

    assert refs == [
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "name": "ws",
            "uid": "uid-123",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_seed_phi_3_statefulset_runs_the_preset_image_on_one_gpu() -> None:
    obj = load(SEED_EXAMPLES[0])
    sts = _sts(obj)
    container = _container(sts)
    pod = sts["spec"]["template"]["spec"]

    assert sts["metadata"]["name"] == "workspace-phi-3-mini"
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == "workspace-phi-3-mini-headless"
    assert container["image"] == "mcr.microsoft.com/aks/kaito/kaito-phi-3-mini-4k-instruct:0.2.0"
    assert container["command"] == [
        "python", "-m", "kaito.runtime.inference", "--model-dir", "/workspace/weights", "--port", "5000",
    ]  # fmt: skip
    assert container["resources"] == {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/health", "port": 5000},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    assert container["ports"] == [{"name": "http", "containerPort": 5000, "protocol": "TCP"}]
    assert pod["tolerations"] == GPU_TOLERATIONS
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "apps", "operator": "In", "values": ["phi-3"]}]}]
    }
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {"name": "config-volume", "configMap": {"name": "workspace-phi-3-mini-inference-config"}} in pod["volumes"]
    assert {"name": "KAITO_TENSOR_PARALLEL_SIZE", "value": "1"} in container["env"]
    assert sts["spec"]["template"]["metadata"]["annotations"] == {
        "workspace.kaito.io/hash": spec_hash(parse_workspace(obj))
    }


def test_cpu_preset_runs_the_local_runtime_without_gpus_or_shm() -> None:
    sts = _sts(inference_ws(preset="smollm2-135m-instruct", instance_type="local-cpu"), gpus=0)
    container = _container(sts)

    assert container["image"] == "kaito-py/runtime-cpu:9.9.9"
    assert container["command"] == [
        "python", "-m", "kaito.runtime.inference", "--preset", "smollm2-135m-instruct", "--port", "5000",
    ]  # fmt: skip
    assert "resources" not in container
    assert all(v["name"] != "dshm" for v in sts["spec"]["template"]["spec"]["volumes"])


def test_image_adapters_get_a_pull_init_container_and_strength_env() -> None:
    obj = edit(
        inference_ws(),
        "inference.adapters",
        [
            {"source": {"name": "a1", "image": "reg.io/a1:1", "imagePullSecrets": ["regcred"]}, "strength": "0.3"},
            {"source": {"name": "a2", "volumeSource": {"persistentVolumeClaim": {"claimName": "a2"}}}},
        ],
    )

    sts = _sts(obj)
    pod = sts["spec"]["template"]["spec"]
    container = _container(sts)

    assert pod["initContainers"] == [
        {
            "name": "adapter-a1",
            "image": "kaito-py/runtime-cpu:9.9.9",
            "command": [
                "python", "-m", "kaito.runtime.oci", "pull", "reg.io/a1:1", "/mnt/adapter/a1",
                "--docker-config", "/mnt/secrets/regcred/.dockerconfigjson",
            ],
            "volumeMounts": [
                {"name": "adapter-volume", "mountPath": "/mnt/adapter"},
                {"name": "pull-secret-regcred", "mountPath": "/mnt/secrets/regcred", "readOnly": True},
            ],
        }
    ]  # fmt: skip
    assert {"name": "a1", "value": "0.3"} in container["env"]
    assert {"name": "a2", "value": "1.0"} in container["env"]
    assert {"name": "adapter-a2", "persistentVolumeClaim": {"claimName": "a2"}} in pod["volumes"]
    assert {"name": "adapter-a2", "mountPath": "/mnt/adapter/a2", "readOnly": True} in container["volumeMounts"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_private_access_uses_the_private_image_and_pull_secrets() -> None:
    obj = edit(
        inference_ws(),
        "inference.preset",
        {
            "name": "phi-3-mini-4k-instruct",
            "accessMode": "private",
            "presetOptions": {"image": "my.reg/phi3:1", "imagePullSecrets": ["mine"]},
        },
    )

    sts = _sts(obj)

    assert _container(sts)["image"] == "my.reg/phi3:1"
    assert sts["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "mine"}]


def test_multi_node_pods_learn_the_leader_address() -> None:
    sts = _sts(inference_ws(preset="llama-3.3-70b-instruct", count=3), node_count=3)

    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(sts)["env"]}
    assert sts["spec"]["replicas"] == 3
    assert env["KAITO_LEADER_ADDRESS"] == "ws-0.ws-headless.default.svc.cluster.local"
    # each pod learns its rank from the StatefulSet's pod-index label, so ranks 1.. fail clearly in the runtime
    assert env["POD_INDEX"] == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}
    assert env["KAITO_PIPELINE_PARALLEL_SIZE"] == "3" and env["KAITO_NODE_COUNT"] == "3"


def test_template_workspace_keeps_the_users_pod_and_adds_kaito_scheduling() -> None:
    template = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {
            "containers": [{"name": "server", "image": "my.reg/server:1"}],
            "tolerations": [{"key": "x", "operator": "Exists"}],
        },
    }
    obj = edit(edit(inference_ws(), "inference.preset", DELETE), "inference.template", template)

    sts = _sts(obj)
    pod_template = sts["spec"]["template"]

    assert pod_template["spec"]["containers"] == [{"name": "server", "image": "my.reg/server:1"}]
    assert pod_template["spec"]["tolerations"] == [{"key": "x", "operator": "Exists"}, *GPU_TOLERATIONS]
    assert pod_template["metadata"]["labels"] == {"team": "a", **LABELS}


def test_inference_configmap_records_context_and_parallelism() -> None:
    ws = parse_workspace(inference_ws(preset="llama-3.3-70b-instruct", count=3))
    est = estimate(CATALOG.preset("llama-3.3-70b-instruct"), CATALOG.sku("Standard_NC24ads_A100_v4"))

    cm = inference_configmap(ws, CATALOG.preset("llama-3.3-70b-instruct"), est, node_count=3)

    assert cm["metadata"]["name"] == "ws-inference-config"
    assert yaml.safe_load(cm["data"]["inference_config.yaml"]) == {
        "preset": "llama-3.3-70b-instruct",
        "max_model_len": 8192,
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 3,
        "node_count": 3,
    }


def test_spec_hash_ignores_key_order_metadata_and_status_but_not_spec() -> None:
    a = inference_ws()
    reordered = {k: a[k] for k in reversed(list(a))}
    relabelled = edit(edit(a, "metadata.labels", {"x": "y"}), "status", {"state": "Ready"})
    changed = edit(a, "resource.count", 2)

    h = spec_hash(parse_workspace(a))

    assert len(h) == 64
    assert spec_hash(parse_workspace(reordered)) == h
    assert spec_hash(parse_workspace(relabelled)) == h
    assert spec_hash(parse_workspace(changed)) != h
