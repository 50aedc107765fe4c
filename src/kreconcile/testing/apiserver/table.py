"""The Table format (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``, reference item 9) that
``kubectl get`` asks for: column definitions and one row per object. Custom resources use their CRD's
``additionalPrinterColumns`` (JSONPath, including filters like ``.status.conditions[?(@.type=="Ready")].status``);
built-in kinds get the columns kubectl users know (pods: NAME READY STATUS RESTARTS AGE...). Columns with
``priority > 0`` show only with ``-o wide``. Date columns are rendered as ages (``5m``), like kubectl shows them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .resources import ResourceType

Column = tuple[str, str, int, Callable[[dict[str, Any]], Any]]
"""(name, type, priority, cell function)."""


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: 45s, 3m20s, 15m, 5h3m, 30h, 3d4h, 40d, 2y30d."""
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    y = d // 365
    if h < 24 * 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def age(timestamp: Any, now: float) -> str:
    """The age of an RFC 3339 timestamp, or ``<unknown>``."""
    if not isinstance(timestamp, str):
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "<unknown>"
    return human_duration(now - then)


# ---- JSONPath (the subset kubectl printer columns use) ---------------------------------------------------------
_TOKEN = re.compile(
    r"\.\.|\.((?:\\.|[^.\[\\])+)|\[\?\((.*?)\)\]|\[\*\]|\[(-?\d+)\]|\['((?:\\.|[^'])*)'\]|\[\"(.*?)\"\]"
)


def _parse(path: str) -> list[tuple[str, Any]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    if path and not path.startswith((".", "[")):
        path = "." + path
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        if m.group(1) is not None:
            out.append(("field", m.group(1).replace("\\.", ".")))
        elif m.group(2) is not None:
            out.append(("filter", m.group(2)))
        elif m.group(0) == "[*]":
            out.append(("all", None))
        elif m.group(3) is not None:
            out.append(("index", int(m.group(3))))
        elif m.group(4) is not None:
            out.append(("field", m.group(4).replace("\\'", "'")))
        elif m.group(5) is not None:
            out.append(("field", m.group(5)))
        pos = m.end()
    return out


def _filter_match(item: Any, expr: str) -> bool:
    m = re.fullmatch(r"\s*@((?:\.[\w\-/\\.]+)+)\s*(==|!=)\s*(\"[^\"]*\"|'[^']*'|[-\w.]+)\s*", expr)
    if not m:
        m2 = re.fullmatch(r"\s*@((?:\.[\w\-]+)+)\s*", expr)
        if m2:
            return bool(find(item, m2.group(1)))
        raise ValueError(f"unsupported JSONPath filter {expr!r}")
    values = find(item, m.group(1))
    raw = m.group(3)
    want: Any = raw[1:-1] if raw[0] in "\"'" else json.loads(raw) if re.fullmatch(r"-?\d+(\.\d+)?|true|false",
                                                                                    raw) else raw
    hit = any(v == want for v in values)
    return hit if m.group(2) == "==" else not hit


def find(obj: Any, path: str) -> list[Any]:
    """All values ``path`` selects in ``obj`` (``.a.b``, ``[0]``, ``[*]``, ``[?(@.type=="Ready")]``)."""
    current = [obj]
    for kind, arg in _parse(path):
        nxt: list[Any] = []
        for value in current:
            if kind == "field":
                if isinstance(value, dict) and arg in value:
                    nxt.append(value[arg])
            elif kind == "index":
                if isinstance(value, list) and -len(value) <= arg < len(value):
                    nxt.append(value[arg])
            elif kind == "all":
                if isinstance(value, list):
                    nxt.extend(value)
                elif isinstance(value, dict):
                    nxt.extend(value.values())
            elif kind == "filter":
                if isinstance(value, list):
                    nxt.extend(i for i in value if _filter_match(i, arg))
        current = nxt
    return current


def _jsonpath_cell(path: str, type_: str, now: float) -> Callable[[dict[str, Any]], Any]:
    def cell(obj: dict[str, Any]) -> Any:
        try:
            values = find(obj, path)
        except ValueError:
            return None
        if not values:
            return None
        value = values[0]
        if type_ == "date":
            return age(value, now)
        if type_ == "string":
            return " ".join(v if isinstance(v, str) else json.dumps(v) for v in values)
        return value

    return cell


# ---- built-in columns ----------------------------------------------------------------------------------------
def _pod_ready(o: dict[str, Any]) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(o: dict[str, Any]) -> str:
    if o["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = o.get("status") or {}
    for s in status.get("containerStatuses") or []:
        state = s.get("state") or {}
        for k in ("waiting", "terminated"):
            if state.get(k, {}).get("reason"):
                return str(state[k]["reason"])
    return str(status.get("reason") or status.get("phase") or "Pending")


def _restarts(o: dict[str, Any]) -> int:
    return sum(int(s.get("restartCount") or 0) for s in (o.get("status") or {}).get("containerStatuses") or [])


def _containers(o: dict[str, Any], field: str) -> str:
    spec = ((o.get("spec") or {}).get("template") or {}).get("spec") or {}
    return ",".join(str(c.get(field, "")) for c in spec.get("containers") or [])


def _selector(o: dict[str, Any]) -> str:
    sel = (o.get("spec") or {}).get("selector") or {}
    labels = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    return ",".join(f"{k}={v}" for k, v in labels.items() if isinstance(v, str)) or "<none>"


def _ports(o: dict[str, Any]) -> str:
    ports = (o.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _node_status(o: dict[str, Any]) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            status = "Ready" if c.get("status") == "True" else "NotReady"
            return status + (",SchedulingDisabled" if (o.get("spec") or {}).get("unschedulable") else "")
    return "Unknown"


def _st(path: str) -> Callable[[dict[str, Any]], Any]:
    return lambda o: (find(o, path) or [None])[0]


def builtin_columns(rt: ResourceType, now: float) -> list[Column]:
    """The columns of a built-in kind (after NAME; AGE is placed as kubectl shows it)."""
    created = _jsonpath_cell(".metadata.creationTimestamp", "date", now)
    key = rt.key
    if key == ("", "pods"):
        return [("Ready", "string", 0, _pod_ready), ("Status", "string", 0, _pod_status),
                ("Restarts", "string", 0, lambda o: str(_restarts(o))), ("Age", "string", 0, created),
                ("IP", "string", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
                ("Node", "string", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
                ("Nominated Node", "string", 1, lambda o: (o.get("status") or {}).get("nominatedNodeName") or
                 "<none>"),
                ("Readiness Gates", "string", 1, lambda o: "<none>")]
    if key == ("apps", "deployments"):
        return [("Ready", "string", 0, lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                 f"{(o.get('spec') or {}).get('replicas', 0)}"),
                ("Up-to-date", "integer", 0, lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
                ("Available", "integer", 0, lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
                ("Age", "string", 0, created), ("Containers", "string", 1, lambda o: _containers(o, "name")),
                ("Images", "string", 1, lambda o: _containers(o, "image")), ("Selector", "string", 1, _selector)]
    if key in (("apps", "statefulsets"), ("apps", "replicasets")):
        return [("Ready", "string", 0, lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                 f"{(o.get('spec') or {}).get('replicas', 0)}"), ("Age", "string", 0, created),
                ("Containers", "string", 1, lambda o: _containers(o, "name")),
                ("Images", "string", 1, lambda o: _containers(o, "image"))]
    if key == ("batch", "jobs"):
        return [("Completions", "string", 0, lambda o: f"{(o.get('status') or {}).get('succeeded', 0)}/"
                 f"{(o.get('spec') or {}).get('completions', 1)}"), ("Age", "string", 0, created),
                ("Containers", "string", 1, lambda o: _containers(o, "name")),
                ("Images", "string", 1, lambda o: _containers(o, "image")), ("Selector", "string", 1, _selector)]
    if key == ("", "services"):
        return [("Type", "string", 0, _st(".spec.type")), ("Cluster-IP", "string", 0, _st(".spec.clusterIP")),
                ("External-IP", "string", 0, lambda o: "<none>"), ("Port(s)", "string", 0, _ports),
                ("Age", "string", 0, created), ("Selector", "string", 1, _selector)]
    if key == ("", "nodes"):
        return [("Status", "string", 0, _node_status), ("Roles", "string", 0, lambda o: "<none>"),
                ("Age", "string", 0, created),
                ("Version", "string", 0, lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get(
                    "kubeletVersion", ""))]
    if key == ("", "namespaces"):
        return [("Status", "string", 0, _st(".status.phase")), ("Age", "string", 0, created)]
    if key == ("", "configmaps"):
        return [("Data", "integer", 0, lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
                ("Age", "string", 0, created)]
    if key == ("", "secrets"):
        return [("Type", "string", 0, _st(".type")), ("Data", "integer", 0, lambda o: len(o.get("data") or {})),
                ("Age", "string", 0, created)]
    if key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        return [("Created At", "date", 0, _st(".metadata.creationTimestamp"))]
    return [("Age", "string", 0, created)]


def _columns(rt: ResourceType, now: float) -> list[Column]:
    if rt.crd is None:
        return builtin_columns(rt, now)
    cols: list[Column] = []
    for c in rt.printer_columns:
        type_ = str(c.get("type", "string"))
        cols.append((str(c["name"]), "string" if type_ == "date" else type_, int(c.get("priority", 0)),
                     _jsonpath_cell(str(c.get("jsonPath", "")), type_, now)))
    return cols


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def to_table(rt: ResourceType, items: list[dict[str, Any]], list_meta: dict[str, Any], now: float,
             include_object: str = "Metadata", headers: bool = True, api_version: str = "meta.k8s.io/v1"
             ) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``items`` (``includeObject``: None, Metadata (default) or Object)."""
    cols = _columns(rt, now)
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name must be unique "
                    "within a namespace.", "priority": 0}]
    definitions += [{"name": n, "type": t, "format": "", "description": n, "priority": p} for n, t, p, _ in cols]
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": [obj["metadata"].get("name")] + [f(obj) for _, _, _, f in cols]}
        ro = _row_object(obj, include_object)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    table: dict[str, Any] = {"kind": "Table", "apiVersion": api_version, "metadata": list_meta, "rows": rows}
    if headers:
        table["columnDefinitions"] = definitions
    else:
        table["columnDefinitions"] = []
    return table


def wants_table(accept: str) -> str | None:
    """The Table apiVersion (``meta.k8s.io/v1`` or ``v1beta1``) an Accept header asks for first, if any."""
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=Table" in p:
            return "meta.k8s.io/v1beta1" if "v=v1beta1" in p else "meta.k8s.io/v1"
        if p.split(";")[0] in ("application/json", "*/*", "application/yaml"):
            return None
    return None
