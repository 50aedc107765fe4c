"""Scheduler filters, scoring and the Unschedulable message shape."""

from __future__ import annotations

from typing import Any

import pytest

from kreconcile.testing.scheduler import (
    NO_NODES_MESSAGE,
    filter_node,
    node_selector_term_matches,
    schedule,
    tolerates,
)


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
         **allocatable: str) -> dict[str, Any]:
    alloc = {"cpu": "4", "memory": "8Gi", "pods": "110", **{k.replace("_", "."): v for k, v in allocatable.items()}}
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": alloc},
    }


def gpu_node(name: str, gpus: str = "2", **kw: Any) -> dict[str, Any]:
    n = node(name, **kw)
    n["status"]["allocatable"]["nvidia.com/gpu"] = gpus
    return n


def pod(name: str = "p", gpus: int = 0, cpu: str = "100m", node_name: str = "", phase: str = "Pending",
        **spec: Any) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}, "limits": limits}}],
                 **({"nodeName": node_name} if node_name else {}), **spec},
        "status": {"phase": phase},
    }


def test_gpu_pod_message_counts_each_reason_like_kube_scheduler() -> None:
    nodes = [
        gpu_node("gpu-1", gpus="1", labels={"pool": "gpu"}),
        node("cpu-1", labels={"pool": "cpu"}),
        node("cpu-2", labels={"pool": "cpu"}),
    ]
    p = pod(gpus=2, nodeSelector={"pool": "gpu"})
    result = schedule(p, nodes, [])
    assert result.node is None
    assert result.message == (
        "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, "
        "2 node(s) didn't match Pod's node affinity/selector."
    )


def test_no_nodes_at_all() -> None:
    assert schedule(pod(), [], []).message == NO_NODES_MESSAGE


def test_resources_of_running_pods_count_and_terminal_pods_do_not() -> None:
    nodes = [gpu_node("g", gpus="2")]
    running = pod("a", gpus=2, node_name="g", phase="Running")
    done = pod("b", gpus=2, node_name="g", phase="Succeeded")
    assert schedule(pod(gpus=1), nodes, [running]).message == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    assert schedule(pod(gpus=2), nodes, [done]).node == "g"


def test_untolerated_taint_is_named_and_a_toleration_admits_the_pod() -> None:
    tainted = node("t", taints=[{"key": "sku", "value": "gpu", "effect": "NoSchedule"}])
    assert filter_node(pod(), tainted, {}) == ["node(s) had untolerated taint {sku: gpu}"]
    tolerant = pod(tolerations=[{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
    assert filter_node(tolerant, tainted, {}) == []
    soft = node("s", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    assert filter_node(pod(), soft, {}) == []


@pytest.mark.parametrize(
    ("toleration", "ok"),
    [
        ({"operator": "Exists"}, True),
        ({"key": "sku", "operator": "Exists"}, True),
        ({"key": "sku", "operator": "Equal", "value": "cpu"}, False),
        ({"key": "sku", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_toleration_matching(toleration: dict[str, str], ok: bool) -> None:
    assert tolerates(toleration, {"key": "sku", "value": "gpu", "effect": "NoSchedule"}) is ok


def test_required_node_affinity_terms_are_ored_expressions_anded() -> None:
    n = node("n1", labels={"zone": "a", "gen": "5"})
    assert node_selector_term_matches({"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "gen", "operator": "Gt", "values": ["4"]}]}, n)
    assert not node_selector_term_matches({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, n)
    assert node_selector_term_matches({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}, n)
    assert not node_selector_term_matches({}, n)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]},
    ]}}}
    assert schedule(pod(affinity=affinity), [n], []).node == "n1"


def test_unschedulable_node_and_node_name() -> None:
    cordoned = node("c")
    cordoned["spec"]["unschedulable"] = True
    assert filter_node(pod(), cordoned, {}) == ["node(s) were unschedulable"]
    assert schedule(pod(nodeName="other"), [node("x")], []).message == (
        "0/1 nodes are available: 1 node(s) didn't match the requested node name."
    )


def test_least_allocated_node_wins_and_ties_go_by_name() -> None:
    busy = pod("busy", cpu="3", node_name="a", phase="Running")
    assert schedule(pod(cpu="1"), [node("a"), node("b")], [busy]).node == "b"
    assert schedule(pod(cpu="1"), [node("b"), node("a")], []).node == "a"


def test_too_many_pods_and_insufficient_cpu_are_both_reported() -> None:
    small = node("s", cpu="1", pods="1")
    existing = pod("e", cpu="1", node_name="s", phase="Running")
    result = schedule(pod(cpu="1"), [small], [existing])
    assert result.message == "0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods."
