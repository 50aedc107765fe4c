"""Per-kind defaults, validation and lifecycle hooks of the built-in kinds (the registry strategies).

Defaults follow ``k8s.io/kubernetes/pkg/apis/*/v1/defaults.go`` for the fields our workloads and kubectl read
(pod restartPolicy, dnsPolicy, terminationGracePeriodSeconds 30, imagePullPolicy; Deployment replicas 1 and
RollingUpdate 25%/25%, revisionHistoryLimit 10, progressDeadlineSeconds 600; StatefulSet OrderedReady; Job
backoffLimit 6 and its generated controller-uid selector; Service ClusterIP allocation, TCP ports, targetPort).
Validation covers the rules a wrong manifest most often breaks, each a 422 naming the field.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
from typing import TYPE_CHECKING, Any

from . import crd
from .errors import cause, invalid
from .resources import ResourceType

if TYPE_CHECKING:
    from .registry import Registry

_SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")
_ip_counter = itertools.count(10)


def _pod_spec_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            image = str(c.get("image") or "")
            tag = image.rpartition("/")[2]
            latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def _qos(spec: dict[str, Any]) -> str:
    containers = spec.get("containers") or []
    req = [c.get("resources", {}) for c in containers if isinstance(c, dict)]
    if all(not r.get("requests") and not r.get("limits") for r in req):
        return "BestEffort"
    guaranteed = all(
        r.get("limits") and set(r["limits"]) >= {"cpu", "memory"}
        and all(r.get("requests", r["limits"]).get(k, r["limits"][k]) == r["limits"][k] for k in ("cpu", "memory"))
        for r in req
    )
    return "Guaranteed" if guaranteed else "Burstable"


def default(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, registry: Registry) -> None:
    """Fill the defaults of a built-in kind in place (custom resources are defaulted by their schema)."""
    spec = obj.get("spec")
    key = rt.key
    if key == ("", "namespaces"):
        obj.setdefault("spec", {})
        if old is None:
            obj["spec"].setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif key == ("", "pods") and isinstance(spec, dict):
        _pod_spec_defaults(spec)
        if old is None:
            obj["status"] = {"phase": "Pending", "qosClass": _qos(spec)}
    elif key in (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets"), ("apps", "daemonsets"),
                 ("batch", "jobs")) and isinstance(spec, dict):
        template = spec.get("template")
        if isinstance(template, dict) and isinstance(template.get("spec"), dict):
            _pod_spec_defaults(template["spec"])
        if key != ("apps", "daemonsets") and key != ("batch", "jobs"):
            spec.setdefault("replicas", 1)
        if key == ("apps", "deployments"):
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        elif key == ("apps", "statefulsets"):
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        elif key == ("batch", "jobs"):
            _job_defaults(obj, spec, old)
        if old is None and rt.status_subresource:
            obj["status"] = {}
    elif key == ("", "services") and isinstance(spec, dict):
        _service_defaults(spec, old)
    elif key == ("", "secrets"):
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        crd.default_crd(obj, old)


def _job_defaults(obj: dict[str, Any], spec: dict[str, Any], old: dict[str, Any] | None) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    if old is None and not spec.get("manualSelector"):
        uid = obj["metadata"]["uid"]
        labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": obj["metadata"]["name"],
                  "controller-uid": uid, "job-name": obj["metadata"]["name"]}
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)


def _service_defaults(spec: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        if old is not None and old.get("spec", {}).get("clusterIP"):
            spec.setdefault("clusterIP", old["spec"]["clusterIP"])
            spec.setdefault("clusterIPs", old["spec"].get("clusterIPs") or [old["spec"]["clusterIP"]])
        if not spec.get("clusterIP"):
            spec["clusterIP"] = str(_SERVICE_NET[next(_ip_counter)])
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "port" in p:
                p.setdefault("targetPort", p["port"])


def _selector_matches(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    from .selectors import labels_match, selector_from_label_selector

    return labels_match(selector_from_label_selector(selector), {"metadata": {"labels": labels}})


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Validate a built-in object.

    Raises:
        APIError: 422 Invalid with one cause per broken rule.
    """
    causes: list[dict[str, str]] = []
    spec = obj.get("spec")
    key = rt.key
    if key == ("", "pods"):
        _validate_pod_spec(spec, "spec", causes)
    elif key in (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets"), ("batch", "jobs")):
        if not isinstance(spec, dict):
            causes.append(cause("spec", "Required value", "FieldValueRequired"))
        else:
            selector = spec.get("selector")
            template = spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not selector and key != ("batch", "jobs"):
                causes.append(cause("spec.selector", "Required value", "FieldValueRequired"))
            elif selector and not (selector.get("matchLabels") or selector.get("matchExpressions")):
                causes.append(cause("spec.selector", "Invalid value: empty selector is invalid for "
                                    f"{rt.kind.lower()}"))
            elif selector and not _selector_matches(selector, labels):
                causes.append(cause("spec.template.metadata.labels", f"Invalid value: {labels}: `selector` does "
                                    "not match template `labels`"))
            _validate_pod_spec(template.get("spec"), "spec.template.spec", causes)
            if key == ("batch", "jobs"):
                policy = (template.get("spec") or {}).get("restartPolicy")
                if policy not in ("OnFailure", "Never"):
                    causes.append(cause("spec.template.spec.restartPolicy", f'Unsupported value: "{policy}": '
                                        'supported values: "OnFailure", "Never"', "FieldValueNotSupported"))
            if old is not None and key != ("batch", "jobs") and selector != (old.get("spec") or {}).get("selector"):
                causes.append(cause("spec.selector", f"Invalid value: {selector}: field is immutable"))
            replicas = spec.get("replicas")
            if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
                causes.append(cause("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal "
                                    "to 0"))
    elif key == ("", "services") and isinstance(spec, dict):
        for i, p in enumerate(spec.get("ports") or []):
            if not isinstance(p, dict) or not isinstance(p.get("port"), int) or not 0 < p["port"] < 65536:
                causes.append(cause(f"spec.ports[{i}].port", "Invalid value: must be between 1 and 65535, "
                                    "inclusive"))
        if old is not None and (old.get("spec") or {}).get("clusterIP") not in (None, spec.get("clusterIP")):
            causes.append(cause("spec.clusterIP", "Invalid value: field is immutable"))
    elif key in (("", "configmaps"), ("", "secrets")) and old is not None and old.get("immutable"):
        if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
            causes.append(cause("data", "Forbidden: field is immutable when `immutable` is set",
                                "FieldValueForbidden"))
    elif key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        causes.extend(crd.validate_crd(obj, old))
    elif key in (("", "events"), ("events.k8s.io", "events")):
        ref = obj.get("involvedObject") if key[0] == "" else obj.get("regarding")
        ref_ns = (ref or {}).get("namespace") or ""
        ns = obj["metadata"].get("namespace") or ""
        if (ref_ns and ref_ns != ns) or (not ref_ns and ns not in ("", "default")):
            causes.append(cause("involvedObject.namespace", f'Invalid value: "{ref_ns}": does not match '
                                "event.namespace"))
    if key in (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets")):
        status = obj.get("status") or {}
        replicas = int(status.get("replicas") or 0)
        ready = int(status.get("readyReplicas") or 0)
        if ready > replicas:
            causes.append(cause("status.readyReplicas", f"Invalid value: {ready}: cannot be greater than "
                                "status.replicas"))
        available = int(status.get("availableReplicas") or 0)
        if available > replicas:
            causes.append(cause("status.availableReplicas", f"Invalid value: {available}: cannot be greater "
                                "than status.replicas"))
        if key == ("apps", "deployments") and available > ready:
            causes.append(cause("status.availableReplicas", f"Invalid value: {available}: cannot be greater "
                                "than readyReplicas"))
    if causes:
        raise invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), causes)


def _validate_pod_spec(spec: Any, path: str, causes: list[dict[str, str]]) -> None:
    if not isinstance(spec, dict):
        causes.append(cause(path, "Required value", "FieldValueRequired"))
        return
    containers = spec.get("containers")
    if not containers:
        causes.append(cause(f"{path}.containers", "Required value", "FieldValueRequired"))
        return
    seen: set[str] = set()
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            causes.append(cause(f"{path}.containers[{i}]", "Invalid value: must be an object"))
            continue
        if not c.get("name"):
            causes.append(cause(f"{path}.containers[{i}].name", "Required value", "FieldValueRequired"))
        elif c["name"] in seen:
            causes.append(cause(f"{path}.containers[{i}].name", f'Duplicate value: "{c["name"]}"',
                                "FieldValueDuplicate"))
        seen.add(str(c.get("name")))
        if not c.get("image"):
            causes.append(cause(f"{path}.containers[{i}].image", "Required value", "FieldValueRequired"))


def before_commit(rt: ResourceType, old: dict[str, Any] | None, new: dict[str, Any], registry: Registry) -> None:
    """Last changes before a write is stored (none today; kept for symmetry with :func:`after_commit`)."""


def after_commit(rt: ResourceType, old: dict[str, Any] | None, new: dict[str, Any], registry: Registry) -> None:
    """React to a committed write: CRDs start or stop serving their resources."""
    if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and registry.on_crd_change is not None:
        still = registry.store.get(rt.key, "", new["metadata"]["name"])
        registry.on_crd_change(old, still)


def blocks_removal(rt: ResourceType, obj: dict[str, Any]) -> bool:
    """Whether something other than metadata.finalizers keeps a deleting object: a namespace's
    ``spec.finalizers`` (the namespace controller clears them) or a pod's pending graceful termination."""
    if rt.key == ("", "namespaces"):
        return bool((obj.get("spec") or {}).get("finalizers"))
    if rt.key == ("", "pods"):
        return int(obj["metadata"].get("deletionGracePeriodSeconds") or 0) > 0
    return False


def grace_period(rt: ResourceType, obj: dict[str, Any], requested: Any) -> int:
    """Deletion grace in seconds: 0 except for pods bound to a node (the kubelet finishes the deletion), which get
    ``gracePeriodSeconds`` or their ``terminationGracePeriodSeconds`` (30)."""
    if rt.key != ("", "pods"):
        return 0
    if not (obj.get("spec") or {}).get("nodeName") or (obj.get("status") or {}).get("phase") in ("Succeeded",
                                                                                                 "Failed"):
        return 0
    if requested is not None:
        return max(0, int(requested))
    return int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def on_delete_requested(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Mark a deleting namespace ``Terminating``."""
    if rt.key == ("", "namespaces"):
        obj.setdefault("status", {})["phase"] = "Terminating"
