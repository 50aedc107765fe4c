"""manifests/: valid against the Kubernetes JSON schemas, least-privilege RBAC (no wildcards, yet every permission
the controllers use), a hardened Deployment, and ``kubectl apply -k manifests/`` accepted by the API server
emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kaito.webhook.config import VALIDATING_NAME

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests"
KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")
K8S_VERSION = "1.30.0"
"""Schemas of the Kubernetes minor we target (kubernetes-validate bundles them)."""


def documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    docs: list[tuple[str, dict[str, Any]]] = []
    for rel in kustomization["resources"]:
        for doc in yaml.safe_load_all((MANIFESTS / rel).read_text()):
            if doc:
                docs.append((rel, doc))
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in documents() if d["kind"] == kind]


def test_kustomization_lists_every_manifest_file() -> None:
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    on_disk = {str(p.relative_to(MANIFESTS)) for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"}
    on_disk |= {str(p.relative_to(MANIFESTS)) for p in (MANIFESTS / "crds").glob("*.yaml")}
    assert listed == on_disk


@pytest.mark.parametrize("index", range(len(documents())))
def test_every_document_is_valid_against_the_kubernetes_schemas(index: int) -> None:
    _rel, doc = documents()[index]
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_servicemonitor_selects_the_metrics_service_port() -> None:
    monitor = yaml.safe_load((MANIFESTS / "prometheus" / "servicemonitor.yaml").read_text())
    service = next(s for s in by_kind("Service") if s["metadata"]["name"] == "kaito-operator-metrics")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def _rules() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{r['kind']}/{r['metadata']['name']}", rule) for kind in ("ClusterRole", "Role") for r in by_kind(kind)
            for rule in r["rules"]]


def test_rbac_has_no_wildcard_verbs_resources_or_groups() -> None:
    for where, rule in _rules():
        for key in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
            assert not any("*" in v for v in rule.get(key, [])), f"{where}: wildcard in {key}: {rule}"
        assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"] and "impersonate" not in rule["verbs"]


def allowed(group: str, resource: str, verb: str, *, namespaced_role: bool = False) -> bool:
    kinds = ("Role",) if namespaced_role else ("ClusterRole",)
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for kind in kinds for r in by_kind(kind) for rule in r["rules"]
    )


# (group, resource, verbs) the operator uses: the controllers' watches (list, watch), their writes, leader election
# and the webhook certificate (src/kaito/controllers, src/kaito/provisioner/local.py, src/kaito/operator/certs.py).
CLUSTER_NEEDS = [
    ("kaito.sh", "workspaces", ["get", "list", "watch", "update", "patch"]),
    ("kaito.sh", "workspaces/status", ["update", "patch"]),
    ("karpenter.sh", "nodeclaims", ["get", "list", "watch", "create", "update", "patch", "delete"]),
    ("karpenter.sh", "nodeclaims/status", ["update"]),
    ("", "nodes", ["get", "list", "watch"]),
    ("", "pods", ["list", "watch"]),
    ("", "pods/log", ["get"]),
    ("apps", "controllerrevisions", ["list", "create", "update", "delete"]),
    ("", "services", ["list", "watch", "create", "update", "delete"]),
    ("", "configmaps", ["list", "watch", "create", "update", "delete"]),
    ("apps", "statefulsets", ["list", "watch", "create", "update", "delete"]),
    ("batch", "jobs", ["list", "watch", "create", "delete"]),
    ("events.k8s.io", "events", ["create"]),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", ["get", "patch"]),
]
NAMESPACE_NEEDS = [
    ("coordination.k8s.io", "leases", ["get", "create", "update"]),
    ("", "secrets", ["get", "create", "update"]),
]


def test_rbac_grants_what_the_operator_uses() -> None:
    for group, resource, verbs in CLUSTER_NEEDS:
        for verb in verbs:
            assert allowed(group, resource, verb), f"ClusterRole lacks {verb} {group or 'core'}/{resource}"
    for group, resource, verbs in NAMESPACE_NEEDS:
        for verb in verbs:
            assert allowed(group, resource, verb, namespaced_role=True), f"Role lacks {verb} {resource}"
    assert not allowed("", "secrets", "get"), "Secrets are readable only in the operator's namespace"


def test_deployment_is_hardened_and_probed() -> None:
    (deploy,) = by_kind("Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert "--leader-elect" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "probes": 8081, "webhook": 9443}
    # the only writable path is the cert dir, an emptyDir
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp/k8s-webhook-server/serving-certs"
    assert pod["serviceAccountName"] == by_kind("ServiceAccount")[0]["metadata"]["name"]


def test_tuning_configmaps_match_the_runtime_defaults() -> None:
    maps = {m["metadata"]["name"]: m for m in by_kind("ConfigMap")}
    for method in ("lora", "qlora"):
        text = (ROOT / "src" / "kaito" / "runtime" / "tuning" / "defaults" / f"{method}.yaml").read_text()
        assert maps[f"{method}-params-template"]["data"]["training_config.yaml"] == text


def test_webhook_configuration_points_at_the_webhook_service() -> None:
    (vwc,) = by_kind("ValidatingWebhookConfiguration")
    assert vwc["metadata"]["name"] == VALIDATING_NAME
    svc_ref = vwc["webhooks"][0]["clientConfig"]["service"]
    svc = next(s for s in by_kind("Service") if s["metadata"]["name"] == svc_ref["name"])
    assert svc["metadata"]["namespace"] == svc_ref["namespace"]
    assert svc_ref["port"] in {p["port"] for p in svc["spec"]["ports"]}


async def _kubectl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.slow
async def test_kubectl_apply_k_manifests_on_the_emulator(kubeconfig: Path) -> None:
    code, out, err = await _kubectl(kubeconfig, "apply", "-k", str(MANIFESTS))
    assert code == 0, err
    for name in ("deployment.apps/kaito-operator", "customresourcedefinition.apiextensions.k8s.io/workspaces.kaito.sh",
                 f"validatingwebhookconfiguration.admissionregistration.k8s.io/{VALIDATING_NAME}",
                 "clusterrole.rbac.authorization.k8s.io/kaito-operator", "configmap/qlora-params-template"):
        assert name in out, out
    code, out, err = await _kubectl(kubeconfig, "get", "deploy,svc,sa,cm,role,rolebinding", "-n", "kaito-workspace",
                                    "-o", "name")
    assert code == 0, err
    assert {"deployment.apps/kaito-operator", "service/kaito-webhook", "service/kaito-operator-metrics",
            "serviceaccount/kaito-operator", "role.rbac.authorization.k8s.io/kaito-operator"} <= set(out.split())
    # applying again changes nothing
    code, out, err = await _kubectl(kubeconfig, "apply", "-k", str(MANIFESTS))
    assert code == 0 and "configured" not in out, out
