"""managedFields bookkeeping and server-side apply (reference item 4, ``application/apply-patch+yaml``).

Field ownership is a set of paths in the ``FieldsV1`` notation: ``f:<field>`` for struct and map keys,
``k:{"name":"c"}`` for items of associative lists (lists with a merge key, or CRD lists of
``x-kubernetes-list-type: map``), ``v:<json>`` for set items (``finalizers``). Identity and server-owned fields
(apiVersion, kind, metadata name/namespace/uid/resourceVersion/generation/creationTimestamp/managedFields)
are never owned.

- Update operations (create, PUT, non-apply patches) give the writer the fields whose values it changed and take
  them from the other managers; the manager name is ``fieldManager`` or the User-Agent's product token.
- Apply: a field in the applied configuration owned by another manager with a different live value is a
  conflict, 409 ``Apply failed with N conflict(s)`` with ``FieldManagerConflict`` causes, unless
  ``force=true``, which takes the field. Fields the applier owned before and dropped from its configuration are
  removed from the object when no other manager owns them. An apply to a missing object creates it (201).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import yaml

from . import objects
from .errors import APIError, bad_request, not_found
from .resources import MERGE_SETS, ResourceType, merge_key

if TYPE_CHECKING:
    from .registry import Registry

Path = tuple[str, ...]
_SKIP_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
              "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}


def _schema_at(schema: Any, names: tuple[str, ...]) -> Any:
    for n in names:
        if not isinstance(schema, dict):
            return None
        if schema.get("type") == "array" or "items" in schema:
            schema = schema.get("items")
        if not isinstance(schema, dict):
            return None
        props = schema.get("properties") or {}
        schema = props.get(n, schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"),
                                                                              dict) else None)
    return schema


def list_semantics(rt: ResourceType, names: tuple[str, ...]) -> tuple[str, list[str]]:
    """How the list at field path ``names`` merges: ("map", keys), ("set", []) or ("atomic", [])."""
    if rt.crd is None or names[:1] == ("metadata",):
        key = merge_key(rt.kind, names)
        if key:
            return "map", [key]
        return ("set", []) if names and names[-1] in MERGE_SETS else ("atomic", [])
    sub = _schema_at(rt.schema, names)
    if isinstance(sub, dict):
        if sub.get("x-kubernetes-list-type") == "map":
            return "map", list(sub.get("x-kubernetes-list-map-keys") or [])
        if sub.get("x-kubernetes-list-type") == "set":
            return "set", []
    return "atomic", []


def _item_key(item: Any, keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys if isinstance(item, dict)}, separators=(",", ":"),
                             sort_keys=True)


def leaves(rt: ResourceType, obj: Any, subresource: str | None = None) -> dict[Path, str]:
    """Every owned path of ``obj`` mapped to its value's canonical JSON (``""`` for list-item markers)."""
    out: dict[Path, str] = {}

    def walk(value: Any, path: Path, names: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            if not value and path:
                out[path] = "{}"
            for k, v in value.items():
                if not path and k in ("apiVersion", "kind"):
                    continue
                if names == ("metadata",) and k in _SKIP_META:
                    continue
                walk(v, (*path, f"f:{k}"), (*names, k))
        elif isinstance(value, list) and path:
            mode, keys = list_semantics(rt, names)
            if mode == "map" and all(isinstance(i, dict) for i in value):
                for item in value:
                    p = (*path, _item_key(item, keys))
                    out[p] = ""
                    walk(item, p, names)
            elif mode == "set":
                for item in value:
                    out[(*path, "v:" + json.dumps(item, separators=(",", ":")))] = ""
            else:
                out[path] = objects.canonical(value)
        elif path:
            out[path] = objects.canonical(value)

    body = obj
    if isinstance(obj, dict) and rt.status_subresource:
        if subresource == "status":
            body = {"status": obj["status"]} if "status" in obj else {}
        else:
            body = {k: v for k, v in obj.items() if k != "status"}
    walk(body, (), ())
    return out


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Render a path set as a FieldsV1 tree (``{"f:spec": {"f:replicas": {}}}``, ``"."`` marks owned inner
    nodes)."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})
    all_paths = set(paths)

    def mark(node: dict[str, Any], path: Path) -> None:
        for k, v in node.items():
            if k == ".":
                continue
            if v and (*path, k) in all_paths:
                v["."] = {}
            mark(v, (*path, k))

    mark(root, ())
    return root


def from_fields_v1(tree: Any, path: Path = ()) -> set[Path]:
    """Parse a FieldsV1 tree back into a path set."""
    out: set[Path] = set()
    if not isinstance(tree, dict):
        return out
    for k, v in tree.items():
        if k == ".":
            out.add(path)
        elif not v:
            out.add((*path, k))
        else:
            out |= from_fields_v1(v, (*path, k))
    return out


def _entry(manager: str, operation: str, api_version: str, paths: set[Path], now: float,
           subresource: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": api_version,
                             "time": objects.rfc3339(now), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths)}
    if subresource:
        entry["subresource"] = subresource
    return entry


def _entries(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((obj or {}).get("metadata") or {}).get("managedFields") or [])


def track_update(rt: ResourceType, old: dict[str, Any] | None, new: dict[str, Any], manager: str,
                 subresource: str | None, now: float, operation: str = "Update") -> None:
    """Record an Update operation in ``new.metadata.managedFields`` (in place). Apply writes set their own."""
    if operation == "Apply":
        return
    meta = new["metadata"]
    given = meta.get("managedFields")
    if old is not None and given is not None and given != (old.get("metadata") or {}).get("managedFields"):
        if given == [{}] or given == []:
            meta.pop("managedFields", None)
        return
    new_leaves = leaves(rt, new, subresource)
    old_leaves = leaves(rt, old, subresource) if old is not None else {}
    changed = {p for p, v in new_leaves.items() if old_leaves.get(p) != v}
    removed = set(old_leaves) - set(new_leaves)
    entries = []
    mine: set[Path] = set()
    mine_found = False
    for e in _entries(old):
        paths = from_fields_v1(e.get("fieldsV1"))
        same = (e.get("manager") == manager and e.get("operation") == "Update"
                and e.get("subresource") == (subresource or None))
        if same:
            mine = paths
            mine_found = True
            continue
        paths -= changed | removed
        if paths:
            entries.append({**e, "fieldsV1": to_fields_v1(paths)})
    mine = (mine | changed) - removed
    if mine or mine_found:
        if mine:
            entries.append(_entry(manager, "Update", rt.api_version, mine, now, subresource))
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def _format_path(path: Path) -> str:
    out = ""
    for part in path:
        kind, _, rest = part.partition(":")
        if kind == "f":
            out += f".{rest}"
        elif kind == "k":
            fields = json.loads(rest)
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in fields.items()) + "]"
        elif kind == "v":
            out += f"[={rest}]"
    return out


def _find_item(items: list[Any], part: str) -> int | None:
    kind, _, rest = part.partition(":")
    want = json.loads(rest)
    for i, item in enumerate(items):
        if kind == "k" and isinstance(item, dict) and all(item.get(k) == v for k, v in want.items()):
            return i
        if kind == "v" and item == want:
            return i
    return None


def _remove_path(obj: Any, path: Path) -> None:
    node = obj
    for part in path[:-1]:
        if part.startswith("f:") and isinstance(node, dict):
            node = node.get(part[2:])
        elif isinstance(node, list):
            idx = _find_item(node, part)
            node = node[idx] if idx is not None else None
        if node is None:
            return
    last = path[-1]
    if last.startswith("f:") and isinstance(node, dict):
        node.pop(last[2:], None)
    elif isinstance(node, list):
        idx = _find_item(node, last)
        if idx is not None:
            node.pop(idx)


def _merge(rt: ResourceType, live: Any, applied: Any, names: tuple[str, ...]) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict):
        out = dict(live)
        for k, v in applied.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(rt, live.get(k), v, (*names, k))
        return out
    if isinstance(applied, list) and isinstance(live, list):
        mode, keys = list_semantics(rt, names)
        if mode == "map":
            out_list = list(live)
            for item in applied:
                idx = _find_item(out_list, _item_key(item, keys)) if isinstance(item, dict) else None
                if idx is None:
                    out_list.append(item)
                else:
                    out_list[idx] = _merge(rt, out_list[idx], item, names)
            return out_list
        if mode == "set":
            return list(live) + [i for i in applied if i not in live]
    return objects.clone(applied)


async def server_side_apply(registry: Registry, rt: ResourceType, namespace: str, name: str, body: bytes, *,
                            subresource: str | None, manager: str, force: bool, dry_run: bool,
                            field_validation: str | None, warnings: list[str] | None
                            ) -> tuple[dict[str, Any], bool]:
    """Server-side apply ``body`` (YAML or JSON) as ``manager``. Returns (object, created)."""
    try:
        applied = yaml.safe_load(body)
    except yaml.YAMLError as e:
        raise bad_request(f"error decoding YAML: {e}") from e
    if not isinstance(applied, dict):
        raise bad_request("the apply configuration must be an object")
    if not applied.get("apiVersion"):
        raise bad_request("invalid object type: apiVersion must be set in the apply configuration")
    if not applied.get("kind"):
        raise bad_request("invalid object type: kind must be set in the apply configuration")
    applied = objects.check_identity(rt, applied, namespace, name)
    applied["metadata"].setdefault("name", name)
    applied["metadata"].pop("managedFields", None)
    key_ns = namespace if rt.namespaced else ""
    now = registry.clock.wall()
    applied_leaves = leaves(rt, applied, subresource)
    if registry.store.get(rt.key, key_ns, name) is None:
        if subresource:
            raise not_found(rt.plural, rt.group, name)
        entry = _entry(manager, "Apply", rt.api_version, set(applied_leaves), now, None)
        created = await registry.create(rt, namespace, applied, manager=manager, dry_run=dry_run,
                                        field_validation=field_validation, warnings=warnings,
                                        managed_fields=[entry])
        return created, True

    def build(current: dict[str, Any]) -> dict[str, Any]:
        live_leaves = leaves(rt, current, subresource)
        entries = _entries(current)
        mine_prev: set[Path] = set()
        others: list[tuple[dict[str, Any], set[Path]]] = []
        for e in entries:
            paths = from_fields_v1(e.get("fieldsV1"))
            if (e.get("manager") == manager and e.get("operation") == "Apply"
                    and e.get("subresource") == (subresource or None)):
                mine_prev = paths
            else:
                others.append((e, paths))
        conflicts = []
        for e, paths in others:
            if e.get("subresource") != (subresource or None):
                continue
            for p in sorted(paths & set(applied_leaves)):
                if live_leaves.get(p) != applied_leaves[p]:
                    conflicts.append((e, p))
        if conflicts and not force:
            causes = [{"reason": "FieldManagerConflict", "field": _format_path(p),
                       "message": f'conflict with "{e.get("manager")}"'
                       + (f' using {e.get("apiVersion")}' if e.get("apiVersion") else "")} for e, p in conflicts]
            n = len(conflicts)
            detail = "\n".join(f'- conflict with "{e.get("manager")}": {_format_path(p)}' for e, p in conflicts)
            raise APIError(409, "Conflict", f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {detail}",
                           {"causes": causes})
        taken = {p for _, p in conflicts}
        owned_by_others: set[Path] = set()
        new_entries = []
        for e, paths in others:
            paths = paths - taken if e.get("subresource") == (subresource or None) else paths
            owned_by_others |= paths
            if paths:
                new_entries.append({**e, "fieldsV1": to_fields_v1(paths)})
        new = objects.clone(current)
        for p in sorted(mine_prev - set(applied_leaves) - owned_by_others, key=len, reverse=True):
            _remove_path(new, p)
        body_cfg = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")}
        meta_cfg = {k: v for k, v in (body_cfg.pop("metadata", None) or {}).items() if k not in _SKIP_META}
        merged = _merge(rt, new, body_cfg, ())
        merged["metadata"] = _merge(rt, new.get("metadata") or {}, meta_cfg, ("metadata",))
        new_entries.append(_entry(manager, "Apply", rt.api_version, set(applied_leaves), now, subresource))
        merged["metadata"]["managedFields"] = new_entries
        return merged

    wanted = applied["metadata"].get("resourceVersion")
    obj = await registry._write(rt, namespace, name, build, wanted, subresource=subresource, manager=manager,
                                dry_run=dry_run, field_validation=field_validation, warnings=warnings,
                                retry=not wanted, operation="Apply")
    return obj, False
