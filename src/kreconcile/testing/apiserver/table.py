"""The Table format (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``, reference item 9) that
``kubectl get`` asks for: column definitions and one row per object. Custom resources use their CRD's
``additionalPrinterColumns`` (JSONPath, including filters like ``.status.conditions[?(@.type=="Ready")].status``);
built-in kinds get the columns of kube-apiserver's table printers (``pkg/printers/internalversion/printers.go``:
pods NAME READY STATUS RESTARTS AGE, nodes NAME STATUS ROLES AGE VERSION, events LAST SEEN TYPE REASON OBJECT
MESSAGE, ...). The server fills every column, as kube-apiserver does (it prints with ``Wide: true``); columns with
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


def _name(o: dict[str, Any]) -> Any:
    return o["metadata"].get("name")


NAME: Column = ("Name", "string", 0, _name)
"""The NAME column every built-in table starts with (events have it last, with priority 1)."""


def _node_roles(o: dict[str, Any]) -> str:
    """``findNodeRoles``: the ``node-role.kubernetes.io/<role>`` label keys and the ``kubernetes.io/role`` value."""
    roles: set[str] = set()
    for k, v in (o["metadata"].get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k.removeprefix("node-role.kubernetes.io/"):
            roles.add(k.removeprefix("node-role.kubernetes.io/"))
        elif k == "kubernetes.io/role" and v:
            roles.add(str(v))
    return ",".join(sorted(roles)) or "<none>"


def _node_address(kind: str) -> Callable[[dict[str, Any]], str]:
    def cell(o: dict[str, Any]) -> str:
        for a in (o.get("status") or {}).get("addresses") or []:
            if a.get("type") == kind:
                return str(a.get("address"))
        return "<none>"

    return cell


def _node_info(field: str) -> Callable[[dict[str, Any]], str]:
    return lambda o: str(((o.get("status") or {}).get("nodeInfo") or {}).get(field) or "<unknown>")


def _event_cells(o: dict[str, Any], now: float) -> dict[str, Any]:
    """``printEvent`` for core/v1 and events.k8s.io/v1 Events: last seen (the series' last observation, else
    lastTimestamp, else the first seen), first seen (firstTimestamp, else eventTime), count (the series' count,
    else count, else 1) and the object as ``kind/name`` in lower-case kind."""
    series = o.get("series") or {}
    first = o.get("firstTimestamp") or o.get("deprecatedFirstTimestamp") or o.get("eventTime")
    last = series.get("lastObservedTime") or o.get("lastTimestamp") or o.get("deprecatedLastTimestamp") or first
    count = series.get("count") or o.get("count") or o.get("deprecatedCount") or 1
    regarding = o.get("involvedObject") or o.get("regarding") or {}
    kind = str(regarding.get("kind") or "").lower()
    source = o.get("source") or o.get("deprecatedSource") or {}
    component = source.get("component") or o.get("reportingController") or ""
    host = source.get("host") or o.get("reportingInstance") or ""
    return {
        "last": age(last, now) if last else "<unknown>",
        "first": age(first, now) if first else "<unknown>",
        "count": int(count),
        "object": f"{kind}/{regarding['name']}" if regarding.get("name") else kind,
        "source": f"{component}, {host}" if host else component,
        "message": str(o.get("message") or o.get("note") or "").strip(),
    }


def _event_columns(now: float) -> list[Column]:
    def ev(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda o: _event_cells(o, now)[key]

    return [("Last Seen", "string", 0, ev("last")), ("Type", "string", 0, _st(".type")),
            ("Reason", "string", 0, _st(".reason")), ("Object", "string", 0, ev("object")),
            ("Subobject", "string", 1, lambda o: (o.get("involvedObject") or o.get("regarding") or {}).get(
                "fieldPath", "")),
            ("Source", "string", 1, ev("source")), ("Message", "string", 0, ev("message")),
            ("First Seen", "string", 1, ev("first")), ("Count", "string", 1, ev("count")),
            ("Name", "string", 1, _name)]


def _job_status(o: dict[str, Any]) -> str:
    """``printJob``'s STATUS: Complete, Failed, Terminating, Suspended, FailureTarget or Running."""
    true = {c.get("type") for c in (o.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    for cond in ("Complete", "Failed"):
        if cond in true:
            return cond
    if o["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for cond in ("Suspended", "FailureTarget"):
        if cond in true:
            return cond
    return "Running"


def _job_completions(o: dict[str, Any]) -> str:
    spec, succeeded = o.get("spec") or {}, (o.get("status") or {}).get("succeeded", 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(o: dict[str, Any], now: float) -> str:
    status = o.get("status") or {}
    start = status.get("startTime")
    if not isinstance(start, str):
        return ""
    end = status.get("completionTime")
    try:
        started = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
        ended = datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp() if isinstance(end, str) else now
    except ValueError:
        return ""
    return human_duration(ended - started)


_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                 "ReadWriteOncePod": "RWOP"}


def _access_modes(o: dict[str, Any]) -> str:
    modes = (o.get("status") or {}).get("accessModes") or []
    return ",".join(_ACCESS_MODES.get(m, m) for m in modes)


def builtin_columns(rt: ResourceType, now: float) -> list[Column]:
    """The columns of a built-in kind, NAME included (first, except for events), as kube-apiserver's printers
    define them (``pkg/printers/internalversion/printers.go``)."""
    if rt.key in (("", "events"), ("events.k8s.io", "events")):
        return _event_columns(now)
    return [NAME, *_builtin_columns_after_name(rt, now)]


def _builtin_columns_after_name(rt: ResourceType, now: float) -> list[Column]:
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
    if key == ("apps", "statefulsets"):
        return [("Ready", "string", 0, lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                 f"{(o.get('spec') or {}).get('replicas', 0)}"), ("Age", "string", 0, created),
                ("Containers", "string", 1, lambda o: _containers(o, "name")),
                ("Images", "string", 1, lambda o: _containers(o, "image"))]
    if key == ("apps", "replicasets"):
        return [("Desired", "integer", 0, lambda o: (o.get("spec") or {}).get("replicas", 0)),
                ("Current", "integer", 0, lambda o: (o.get("status") or {}).get("replicas", 0)),
                ("Ready", "integer", 0, lambda o: (o.get("status") or {}).get("readyReplicas", 0)),
                ("Age", "string", 0, created), ("Containers", "string", 1, lambda o: _containers(o, "name")),
                ("Images", "string", 1, lambda o: _containers(o, "image")), ("Selector", "string", 1, _selector)]
    if key == ("batch", "jobs"):
        return [("Status", "string", 0, _job_status), ("Completions", "string", 0, _job_completions),
                ("Duration", "string", 0, lambda o: _job_duration(o, now)), ("Age", "string", 0, created),
                ("Containers", "string", 1, lambda o: _containers(o, "name")),
                ("Images", "string", 1, lambda o: _containers(o, "image")), ("Selector", "string", 1, _selector)]
    if key == ("", "persistentvolumeclaims"):
        return [("Status", "string", 0, _st(".status.phase")),
                ("Volume", "string", 0, lambda o: (o.get("spec") or {}).get("volumeName", "")),
                ("Capacity", "string", 0, lambda o: ((o.get("status") or {}).get("capacity") or {}).get(
                    "storage", "")),
                ("Access Modes", "string", 0, _access_modes),
                ("StorageClass", "string", 0, lambda o: (o.get("spec") or {}).get("storageClassName") or ""),
                ("VolumeAttributesClass", "string", 0, lambda o: (o.get("spec") or {}).get(
                    "volumeAttributesClassName") or "<unset>"),
                ("Age", "string", 0, created), ("VolumeMode", "string", 1, _st(".spec.volumeMode"))]
    if key == ("", "services"):
        return [("Type", "string", 0, _st(".spec.type")), ("Cluster-IP", "string", 0, _st(".spec.clusterIP")),
                ("External-IP", "string", 0, lambda o: "<none>"), ("Port(s)", "string", 0, _ports),
                ("Age", "string", 0, created), ("Selector", "string", 1, _selector)]
    if key == ("", "nodes"):
        return [("Status", "string", 0, _node_status), ("Roles", "string", 0, _node_roles),
                ("Age", "string", 0, created),
                ("Version", "string", 0, lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get(
                    "kubeletVersion", "")),
                ("Internal-IP", "string", 1, _node_address("InternalIP")),
                ("External-IP", "string", 1, _node_address("ExternalIP")),
                ("OS-Image", "string", 1, _node_info("osImage")),
                ("Kernel-Version", "string", 1, _node_info("kernelVersion")),
                ("Container-Runtime", "string", 1, _node_info("containerRuntimeVersion"))]
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
    cols: list[Column] = [NAME]
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
    definitions = [{"name": n, "type": t, "format": "name" if n == "Name" else "",
                    "description": "Name must be unique within a namespace." if n == "Name" else n, "priority": p}
                   for n, t, p, _ in cols]
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": [f(obj) for _, _, _, f in cols]}
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
