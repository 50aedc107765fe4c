"""The Table rendering of built-in kinds matches kube-apiserver's printers (``kubectl get`` columns)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kreconcile.testing.apiserver.resources import ResourceType, builtin_types
from kreconcile.testing.apiserver.table import to_table

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()


def _rt(group: str, plural: str) -> ResourceType:
    return next(rt for rt in builtin_types() if rt.key == (group, plural))


def _table(group: str, plural: str, obj: dict[str, Any]) -> tuple[list[str], list[str], list[Any]]:
    """(default columns, -o wide columns, the row's cells of the default columns) as kubectl would show them."""
    table = to_table(_rt(group, plural), [obj], {}, NOW)
    defs = table["columnDefinitions"]
    cells = table["rows"][0]["cells"]
    assert len(cells) == len(defs)
    default = [d["name"] for d in defs if d["priority"] == 0]
    return default, [d["name"] for d in defs], [c for c, d in zip(cells, defs, strict=True) if d["priority"] == 0]


def test_events_show_last_seen_type_reason_object_message() -> None:
    event = {"metadata": {"name": "p.1", "namespace": "default", "creationTimestamp": "2026-01-01T11:00:00Z"},
             "involvedObject": {"kind": "Pod", "name": "workspace-smollm2-0", "namespace": "default"},
             "reason": "FailedMount", "type": "Warning", "message": "configmap \"x\" not found ",
             "firstTimestamp": "2026-01-01T11:50:00Z", "lastTimestamp": "2026-01-01T11:59:00Z", "count": 7,
             "source": {"component": "kubelet", "host": "node-1"}}
    default, wide, cells = _table("", "events", event)
    assert default == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert wide == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count",
                    "Name"]
    assert cells == ["60s", "Warning", "FailedMount", "pod/workspace-smollm2-0", 'configmap "x" not found']
    full = to_table(_rt("", "events"), [event], {}, NOW)["rows"][0]["cells"]
    assert full[5] == "kubelet, node-1" and full[7:] == ["10m", 7, "p.1"]


def test_an_event_series_shows_its_last_observation_and_count() -> None:
    event = {"metadata": {"name": "p.1"}, "involvedObject": {"kind": "Node", "name": "n"}, "type": "Normal",
             "reason": "R", "message": "m", "eventTime": "2026-01-01T11:00:00.000000Z",
             "series": {"count": 4, "lastObservedTime": "2026-01-01T11:59:30.000000Z"}}
    full = to_table(_rt("", "events"), [event], {}, NOW)["rows"][0]["cells"]
    assert full[0] == "30s" and full[7] == "60m" and full[8] == 4


def test_nodes_show_status_roles_age_version() -> None:
    node = {"metadata": {"name": "n", "creationTimestamp": "2026-01-01T11:55:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "gpu"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.30.0-kreconcile", "osImage": "Ubuntu",
                                    "containerRuntimeVersion": "process://kaito-py"}}}
    default, wide, cells = _table("", "nodes", node)
    assert default == ["Name", "Status", "Roles", "Age", "Version"]
    assert cells == ["n", "Ready", "control-plane,gpu", "5m", "v1.30.0-kreconcile"]
    assert wide[5:] == ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]
    full = to_table(_rt("", "nodes"), [node], {}, NOW)["rows"][0]["cells"]
    assert full[5:] == ["127.0.0.1", "<none>", "Ubuntu", "<unknown>", "process://kaito-py"]


def test_jobs_show_status_completions_duration_age() -> None:
    job = {"metadata": {"name": "j", "creationTimestamp": "2026-01-01T11:00:00Z"}, "spec": {"completions": 1},
           "status": {"succeeded": 1, "startTime": "2026-01-01T11:00:00Z", "completionTime": "2026-01-01T11:02:05Z",
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    default, _, cells = _table("batch", "jobs", job)
    assert default == ["Name", "Status", "Completions", "Duration", "Age"]
    assert cells == ["j", "Complete", "1/1", "2m5s", "60m"]


def test_statefulsets_services_configmaps_pods_and_pvcs_have_kubectls_columns() -> None:
    meta = {"name": "x", "creationTimestamp": "2026-01-01T11:59:00Z"}
    assert _table("apps", "statefulsets", {"metadata": meta, "spec": {"replicas": 1},
                                           "status": {"readyReplicas": 1}})[2] == ["x", "1/1", "60s"]
    assert _table("", "services", {"metadata": meta, "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1",
                                                              "ports": [{"port": 80}]}})[0] == [
        "Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
    assert _table("", "configmaps", {"metadata": meta, "data": {"a": "1"}})[2] == ["x", 1, "60s"]
    assert _table("", "pods", {"metadata": meta, "spec": {"containers": [{"name": "c"}]}})[0] == [
        "Name", "Ready", "Status", "Restarts", "Age"]
    pvc = {"metadata": meta, "spec": {"volumeName": "pv", "storageClassName": "local"},
           "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}
    assert _table("", "persistentvolumeclaims", pvc)[2] == ["x", "Bound", "pv", "1Gi", "RWO", "local", "<unset>",
                                                             "60s"]
