"""The three non-apply patch types, chosen by Content-Type (reference item 4).

- ``application/json-patch+json``: RFC 6902 through the ``jsonpatch`` library; a body that is not a JSON array
  is a 400 BadRequest; a failing operation (``test`` mismatch, missing path) is a 422 Invalid, as the real
  server answers.
- ``application/merge-patch+json``: RFC 7386 (objects merge recursively, ``null`` deletes, arrays replace).
- ``application/strategic-merge-patch+json``: built-in kinds only (415 for custom resources); lists with a patch
  merge key (``containers`` by ``name``...) merge item by item, ``finalizers`` merge as a set, other lists
  replace; directives ``$patch: replace|delete|merge``, ``$setElementOrder/<list>``,
  ``$deleteFromPrimitiveList/<list>`` and ``$retainKeys`` as kubectl sends them.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch

from .errors import APIError, bad_request, unsupported_media_type
from .resources import MERGE_SETS, ResourceType, merge_key

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


def _load(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"error decoding patch: {e}") from e


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of ``target`` by ``patch`` (returns a new value)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _normalize_order(merged: list[Any], patch_order: list[Any], original: list[Any], ident: Any) -> list[Any]:
    """``normalizeElementOrder`` of apimachinery's strategicpatch: items named by the patch (or its
    ``$setElementOrder``) in patch order, server-only items in live order, then merged so a server-only item goes
    before a patch item only when both are in the live list and it came first there."""
    patch_ids = [ident(p) for p in patch_order]
    live_ids = [ident(o) for o in original]
    in_patch = [m for m in merged if ident(m) in patch_ids]
    in_patch.sort(key=lambda m: patch_ids.index(ident(m)))
    server_only = [m for m in merged if ident(m) not in patch_ids]
    server_only.sort(key=lambda m: live_ids.index(ident(m)) if ident(m) in live_ids else len(live_ids))
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if j >= len(in_patch):
            out.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            out.append(in_patch[j])
            j += 1
        else:
            li, ri = ident(server_only[i]), ident(in_patch[j])
            if li in live_ids and ri in live_ids and live_ids.index(li) < live_ids.index(ri):
                out.append(server_only[i])
                i += 1
            else:
                out.append(in_patch[j])
                j += 1
    return out


def _strategic_list(kind: str, path: tuple[str, ...], original: list[Any], patch: list[Any],
                    order: list[Any] | None) -> list[Any]:
    key = merge_key(kind, path)
    name = path[-1] if path else ""
    if key is None:
        if name in MERGE_SETS:
            merged = list(original) + [p for p in patch if p not in original]
            merged = [m for i, m in enumerate(merged) if m not in merged[:i]]
            return _normalize_order(merged, order if order is not None else patch, original, lambda x: x)
        if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
            return [p for p in patch if not (isinstance(p, dict) and "$patch" in p)]
        return [_strip_directives(p) for p in patch]
    out = [dict(x) if isinstance(x, dict) else x for x in original]
    named: list[Any] = []
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"unable to strategic merge list {'.'.join(path)}: items must be objects")
        directive = item.get("$patch")
        if directive == "replace":
            return [_strip_directives(p) for p in patch if p is not item]
        k = item.get(key)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == k), None)
        if directive == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        named.append(item)
        if idx is None:
            out.append(_strip_directives(item))
        else:
            out[idx] = strategic_merge(kind, path, out[idx], item)

    def ident(x: Any) -> Any:
        return x.get(key) if isinstance(x, dict) else x

    return _normalize_order(out, order if order is not None else named, original, ident)


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items()
                if not k.startswith("$") and not k.startswith("$setElementOrder/") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge(kind: str, path: tuple[str, ...], original: Any, patch: Any) -> Any:
    """Strategic merge ``patch`` into ``original`` for a built-in ``kind``; ``path`` is the field path so far."""
    if not isinstance(patch, dict) or not isinstance(original, dict):
        return _strip_directives(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    out = dict(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [x for x in out.get(field) or [] if x not in value]
            continue
        if value is None:
            out.pop(key, None)
            continue
        sub_path = (*path, key)
        if isinstance(value, list):
            order = patch.get(f"$setElementOrder/{key}")
            current = out.get(key) if isinstance(out.get(key), list) else []
            out[key] = _strategic_list(kind, sub_path, current or [], value, order if isinstance(order, list) else None)
        elif isinstance(value, dict):
            merged = strategic_merge(kind, sub_path, out.get(key) if isinstance(out.get(key), dict) else {}, value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = value
    for key, order in patch.items():
        if key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if field not in patch and isinstance(out.get(field), list):
                out[field] = _strategic_list(kind, (*path, field), out[field], [], order)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def apply_patch(rt: ResourceType, current: dict[str, Any], content_type: str, body: bytes) -> dict[str, Any]:
    """The object after a JSON, merge or strategic merge patch (not apply; see :mod:`.apply`).

    Raises:
        APIError: 415 for an unknown patch type or a strategic merge patch on a custom resource; 400 for an
        undecodable patch; 422 when a JSON patch operation fails.
    """
    if content_type == JSON_PATCH:
        ops = _load(body)
        if not isinstance(ops, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch "
                              "(a JSON patch is an array of operations)")
        try:
            patch = jsonpatch.JsonPatch(ops)
            result = patch.apply(current)
        except jsonpatch.JsonPatchTestFailed as e:
            raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
                           ) from e
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException) as e:
            raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
                           ) from e
        except (jsonpatch.InvalidJsonPatch, TypeError, KeyError, AttributeError) as e:
            raise bad_request(f"invalid JSON patch: {e}") from e
    elif content_type == MERGE_PATCH:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request("Invalid JSON Patch") from e
        if not isinstance(doc, dict):
            raise bad_request("error decoding patch: a merge patch must be a JSON object")
        result = merge_patch(current, doc)
    elif content_type == STRATEGIC_PATCH:
        if rt.crd is not None:
            raise unsupported_media_type(content_type)
        doc = _load(body)
        if not isinstance(doc, dict):
            raise bad_request("error decoding patch: a strategic merge patch must be a JSON object")
        result = strategic_merge(rt.kind, (), current, doc)
    else:
        raise unsupported_media_type(content_type)
    if not isinstance(result, dict):
        raise bad_request("the patch did not produce an object")
    return result
