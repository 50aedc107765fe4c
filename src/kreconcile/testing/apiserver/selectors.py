"""Label and field selectors (reference item 7), parsed like ``k8s.io/apimachinery/pkg/labels`` and ``fields``.

Label selector syntax: comma-separated requirements ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``,
``key in (a,b)``, ``key notin (a,b)``, ``key>n``, ``key<n``. Field selector syntax: ``path=v``, ``path==v``,
``path!=v``, comma-separated, over the fields each kind supports (``metadata.name``, ``metadata.namespace`` for
all; ``spec.nodeName``, ``status.phase``... for pods). Bad syntax or an unsupported field raise a 400
:class:`~.errors.APIError` with the real server's wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import APIError, bad_request

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    """One label requirement: ``op`` is one of ``exists``, ``!``, ``=``, ``!=``, ``in``, ``notin``, ``gt``, ``lt``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (``!=`` and ``notin`` match when the key is absent)."""
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if not has:
            return False
        try:
            number = int(value or "")
        except ValueError:
            return False
        return number > int(self.values[0]) if self.op == "gt" else number < int(self.values[0])


def _parse_error(selector: str, why: str) -> APIError:
    return bad_request(f"unable to parse requirement: {why} (labelSelector: {selector!r})")


def _split_top(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _check_key(selector: str, key: str) -> str:
    if not _KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise _parse_error(selector, f'key: Invalid value: "{key}": name part must consist of alphanumeric '
                           "characters, '-', '_' or '.', and must start and end with an alphanumeric character")
    return key


def _check_value(selector: str, value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise _parse_error(selector, f'values[0]: Invalid value: "{value}": a valid label must be an empty string '
                           "or consist of alphanumeric characters, '-', '_' or '.'")
    return value


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse a ``labelSelector`` query string; empty or None selects everything.

    Raises:
        APIError: 400 BadRequest naming the bad requirement.
    """
    if not selector or not selector.strip():
        return []
    out: list[Requirement] = []
    for part in _split_top(selector):
        if not part:
            raise _parse_error(selector, "found '', expected: identifier")
        m = re.match(r"^(\S+?)\s+(in|notin)\s*\((.*)\)$", part)
        if m:
            key, op, raw = m.group(1), m.group(2), m.group(3)
            values = tuple(_check_value(selector, v.strip()) for v in raw.split(",")) if raw.strip() else ()
            if not values:
                raise _parse_error(selector, "for 'in', 'notin' operators, values set can't be empty")
            out.append(Requirement(_check_key(selector, key), op, values))
            continue
        m = re.match(r"^([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*)$", part)
        if m:
            key, op, value = m.group(1), m.group(2), m.group(3).strip()
            if op in ("<", ">"):
                if not re.fullmatch(r"-?\d+", value):
                    raise _parse_error(selector, f"for 'Gt', 'Lt' operators, the value must be an integer: {value}")
                out.append(Requirement(_check_key(selector, key), "gt" if op == ">" else "lt", (value,)))
            else:
                out.append(Requirement(_check_key(selector, key), "!=" if op == "!=" else "=",
                                       (_check_value(selector, value),)))
            continue
        if part.startswith("!"):
            out.append(Requirement(_check_key(selector, part[1:].strip()), "!"))
            continue
        if re.fullmatch(r"[^\s=!(),<>]+", part):
            out.append(Requirement(_check_key(selector, part), "exists"))
            continue
        raise _parse_error(selector, f"found '{part}', expected: in, notin, =, ==, !=, gt, lt")
    return out


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    """Whether the object's ``metadata.labels`` satisfy every requirement."""
    if not requirements:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def selector_from_label_selector(sel: dict[str, Any] | None) -> list[Requirement]:
    """Convert a ``metav1.LabelSelector`` (matchLabels + matchExpressions) into requirements."""
    if not sel:
        return []
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (sel.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in sel.get("matchExpressions") or []:
        reqs.append(Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ())))
    return reqs


# Field selectors: the fields each kind's registry strategy exposes (GetAttrs / AddFieldLabelConversionFunc).
_POD_FIELDS = {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
               "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"}
_EVENT_FIELDS = {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                 "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                 "reason", "reportingComponent", "source", "type"}
EXTRA_FIELDS: dict[tuple[str, str], set[str]] = {
    ("", "pods"): _POD_FIELDS,
    ("", "events"): _EVENT_FIELDS,
    ("", "secrets"): {"type"},
    ("", "nodes"): {"spec.unschedulable"},
    ("", "namespaces"): {"status.phase"},
    ("", "replicationcontrollers"): {"status.replicas"},
    ("batch", "jobs"): {"status.successful"},
    ("events.k8s.io", "events"): {"regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                                  "reason", "type", "reportingController"},
}


@dataclass(frozen=True)
class FieldRequirement:
    """One field requirement: ``path`` (dotted), ``negate`` for ``!=``, ``value``."""

    path: str
    negate: bool
    value: str


def parse_field_selector(selector: str | None, resource_key: tuple[str, str]) -> list[FieldRequirement]:
    """Parse a ``fieldSelector`` for the resource ``(group, plural)``.

    Raises:
        APIError: 400 BadRequest for bad syntax or ``field label not supported: <path>``.
    """
    if not selector or not selector.strip():
        return []
    supported = {"metadata.name", "metadata.namespace"} | EXTRA_FIELDS.get(resource_key, set())
    out = []
    for part in selector.split(","):
        part = part.strip()
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        path, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if path not in supported:
            raise bad_request(f'"{path}" is not a known field selector: only "{", ".join(sorted(supported))}"'
                              if resource_key[0] not in ("", "apps", "batch", "events.k8s.io")
                              else f"field label not supported: {path}")
        out.append(FieldRequirement(path, op == "!=", value))
    return out


def _field_value(obj: dict[str, Any], path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    """Whether the object satisfies every field requirement (missing fields compare as the empty string)."""
    for req in requirements:
        equal = _field_value(obj, req.path) == req.value
        if equal == req.negate:
            return False
    return True


def make_filter(labels: list[Requirement], fields: list[FieldRequirement]) -> Callable[[dict[str, Any]], bool]:
    """A predicate combining label and field requirements."""
    return lambda obj: labels_match(labels, obj) and fields_match(fields, obj)
