"""The scheduler's decision as pure functions: filter nodes, score the feasible ones, explain failures.

Filters run per node in kube-scheduler's default order, stopping at the first that rejects the node, and each
rejection contributes one reason (``NodeResourcesFit`` may contribute several, one per short resource):

=====================  ==========================================================================
plugin                 reason (``k8s.io/kubernetes/pkg/scheduler/framework/plugins``)
=====================  ==========================================================================
NodeUnschedulable      ``node(s) were unschedulable``
NodeName               ``node(s) didn't match the requested node name``
TaintToleration        ``node(s) had untolerated taint {key: value}`` (NoSchedule/NoExecute only)
NodeAffinity           ``node(s) didn't match Pod's node affinity/selector`` (nodeSelector + required terms)
NodeResourcesFit       ``Insufficient cpu``, ``Insufficient memory``, ``Insufficient nvidia.com/gpu``,
                       ``Too many pods``
=====================  ==========================================================================

:func:`unschedulable_message` renders the ``FitError`` text: ``0/3 nodes are available: 1 Insufficient
nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector.`` (counts per reason, sorted as strings);
with no nodes at all, ``no nodes available to schedule pods``. Scoring is ``NodeResourcesFit``'s
``LeastAllocated`` (mean free fraction of cpu and memory), ties broken by node name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from kreconcile.testing.kubelet.quantity import DEFAULT_ALLOCATABLE_PODS, parse_quantity, pod_requests

NO_NODES_MESSAGE = "no nodes available to schedule pods"
"""The scheduler's ``ErrNoNodesAvailable`` text, used when the cluster has no nodes."""
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"


@dataclass(frozen=True)
class ScheduleResult:
    """The outcome for one pod: ``node`` (the chosen node's name) or ``message`` (why none fits)."""

    node: str | None
    message: str = ""
    reasons: Mapping[str, int] = field(default_factory=dict)
    """Reason → number of nodes rejected for it."""


def _label_requirement_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = expr.get("key", ""), expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or []]
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        try:
            have, want = int(labels[key]), int(values[0])
        except (KeyError, IndexError, ValueError):
            return False
        return have > want if op == "Gt" else have < want
    raise ValueError(
        f"nodeSelectorTerms matchExpressions operator {op!r} is not valid; use In, NotIn, Exists, DoesNotExist, Gt, Lt"
    )


def node_selector_term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """One ``NodeSelectorTerm``: all ``matchExpressions`` (labels) and ``matchFields`` (``metadata.name``) hold.

    A term with neither matches no node (the API's rule).
    """
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    name_field = {"metadata.name": (node.get("metadata") or {}).get("name", "")}
    return all(_label_requirement_matches(e, labels) for e in exprs) and all(
        _label_requirement_matches(f, name_field) for f in fields
    )


def matches_node_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """``spec.nodeSelector`` (every label equal) and the required node affinity (any term matches)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {})
    if required:
        terms = required.get("nodeSelectorTerms") or []
        return any(node_selector_term_matches(t, node) for t in terms)
    return True


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``v1.Toleration.ToleratesTaint``: effect empty or equal; key empty (with Exists) or equal; value by operator."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(pod: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first ``NoSchedule``/``NoExecute`` taint of ``node`` that ``pod`` does not tolerate, or None."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def allocatable(node: Mapping[str, Any]) -> dict[str, Fraction]:
    """``status.allocatable`` (falling back to ``status.capacity``) as numbers; ``pods`` defaults to 110."""
    status = node.get("status") or {}
    raw = status.get("allocatable") or status.get("capacity") or {}
    out = {k: parse_quantity(v, f"node status.allocatable.{k}") for k, v in raw.items()}
    out.setdefault("pods", Fraction(DEFAULT_ALLOCATABLE_PODS))
    return out


def is_terminal(pod: Mapping[str, Any]) -> bool:
    """A pod in phase ``Succeeded`` or ``Failed`` (its resources are free again)."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def requested_on_node(pods: Iterable[Mapping[str, Any]]) -> dict[str, Fraction]:
    """Sum of requests of the non-terminal ``pods`` (those bound to one node), plus their count as ``pods``."""
    total: dict[str, Fraction] = {"pods": Fraction(0)}
    for pod in pods:
        if is_terminal(pod):
            continue
        total["pods"] += 1
        for name, qty in pod_requests(pod).items():
            total[name] = total.get(name, Fraction(0)) + qty
    return total


def insufficient(pod: Mapping[str, Any], node: Mapping[str, Any], used: Mapping[str, Fraction]) -> list[str]:
    """``NodeResourcesFit`` reasons for ``pod`` on ``node`` given what is already ``used`` there (empty = fits).

    A requested resource the node does not list counts as 0 available (so a GPU request on a CPU node is
    ``Insufficient nvidia.com/gpu``).
    """
    have = allocatable(node)
    reasons = []
    if used.get("pods", 0) + 1 > have["pods"]:
        reasons.append("Too many pods")
    for name, qty in sorted(pod_requests(pod).items()):
        if qty <= 0:
            continue
        if used.get(name, Fraction(0)) + qty > have.get(name, Fraction(0)):
            reasons.append(f"Insufficient {name}")
    return reasons


def filter_node(pod: Mapping[str, Any], node: Mapping[str, Any], used: Mapping[str, Fraction]) -> list[str]:
    """The reasons ``node`` cannot take ``pod`` (empty list: it can), in the default plugin order."""
    spec = pod.get("spec") or {}
    if (node.get("spec") or {}).get("unschedulable"):
        unschedulable_taint = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
        if not any(tolerates(t, unschedulable_taint) for t in spec.get("tolerations") or []):
            return [REASON_UNSCHEDULABLE]
    wanted = spec.get("nodeName")
    if wanted and wanted != (node.get("metadata") or {}).get("name"):
        return [REASON_NODE_NAME]
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"]
    if not matches_node_affinity(pod, node):
        return [REASON_AFFINITY]
    return insufficient(pod, node, used)


def score(pod: Mapping[str, Any], node: Mapping[str, Any], used: Mapping[str, Fraction]) -> Fraction:
    """``LeastAllocated``: the mean over cpu and memory of the free fraction after placing ``pod`` (higher wins)."""
    have = allocatable(node)
    req = pod_requests(pod)
    parts = []
    for name in ("cpu", "memory"):
        cap = have.get(name, Fraction(0))
        if cap <= 0:
            parts.append(Fraction(0))
            continue
        after = used.get(name, Fraction(0)) + req.get(name, Fraction(0))
        parts.append(max(Fraction(0), (cap - after) / cap))
    return sum(parts, Fraction(0)) / len(parts)


def unschedulable_message(node_count: int, reasons: Mapping[str, int]) -> str:
    """The scheduler's FitError text for a pod no node fits (see module docstring)."""
    if node_count == 0:
        return NO_NODES_MESSAGE
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    message = f"0/{node_count} nodes are available:"
    if parts:
        message += " " + ", ".join(parts) + "."
    return message


def schedule(
    pod: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> ScheduleResult:
    """Choose a node for ``pod`` among ``nodes``, given all ``pods`` already bound (``spec.nodeName`` set).

    Returns the best-scoring feasible node, or ``ScheduleResult(None, message, reasons)``.
    """
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for other in pods:
        node_name = (other.get("spec") or {}).get("nodeName")
        if node_name:
            by_node.setdefault(node_name, []).append(other)
    reasons: Counter[str] = Counter()
    feasible: list[tuple[Fraction, str]] = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name", "")
        used = requested_on_node(by_node.get(name, []))
        rejected = filter_node(pod, node, used)
        if rejected:
            reasons.update(rejected)
        else:
            feasible.append((score(pod, node, used), name))
    if not feasible:
        return ScheduleResult(None, unschedulable_message(len(nodes), reasons), dict(reasons))
    feasible.sort(key=lambda item: (-item[0], item[1]))
    return ScheduleResult(feasible[0][1])
