"""Server-set metadata and the per-write rules of reference items 2, 3 and 5.

Pure functions over JSON dicts: name generation and validation, the create-time metadata (uid,
creationTimestamp, generation), carrying immutable fields across updates, deciding whether the spec changed
(generation), and splitting main-resource and status writes.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import re
import uuid
from typing import Any

from .errors import APIError, bad_request, cause, invalid
from .resources import ResourceType

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# utilrand.String's alphabet (no vowels, no confusable characters); generateName appends 5 of them.
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Resources whose names must be DNS-1123 labels (63 chars, no dots) rather than subdomains.
_LABEL_NAMED = {("", "namespaces"), ("", "services"), ("apps", "statefulsets"), ("apps", "deployments")}


def rfc3339(epoch: float) -> str:
    """``2026-01-01T00:00:00Z``: RFC 3339 in UTC with whole seconds, as metav1.Time serializes."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(epoch: float) -> str:
    """``2026-01-01T00:00:00.000000Z`` (metav1.MicroTime, used by Lease and events.k8s.io)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def clone(obj: Any) -> Any:
    """A deep copy of a JSON value."""
    return copy.deepcopy(obj)


def canonical(obj: Any) -> str:
    """A stable JSON rendering for equality checks."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def generate_name(prefix: str) -> str:
    """``prefix`` + 5 random characters (the real generator's alphabet), the prefix cut to fit 63 characters."""
    return prefix[: 63 - 5] + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))


def validate_metadata(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Validate name, labels and annotations like the real ``ValidateObjectMeta``.

    Raises:
        APIError: 422 Invalid with causes on ``metadata.name``, ``metadata.labels``, ``metadata.annotations``.
    """
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[dict[str, str]] = []
    if not name:
        causes.append(cause("metadata.name", "Required value: name or generateName is required",
                            "FieldValueRequired"))
    elif rt.key in _LABEL_NAMED:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            causes.append(cause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 label must consist '
                                "of lower case alphanumeric characters or '-', and must start and end with an "
                                "alphanumeric character (e.g. 'my-name',  or '123-abc')"))
    else:
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            causes.append(cause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                                "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
                                "with an alphanumeric character (e.g. 'example.com')"))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        causes.append(cause("metadata.labels", "Invalid value: labels must be a map of strings"))
        labels = {}
    for k, v in labels.items():
        if not _valid_qualified_name(k):
            causes.append(cause("metadata.labels", f'Invalid value: "{k}": name part must consist of alphanumeric '
                                "characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
        if isinstance(v, str) and len(v) > 63:  # apimachinery's IsValidLabelValue reports the length on its own
            causes.append(cause("metadata.labels", f'Invalid value: "{v}": must be no more than 63 characters'))
        elif not isinstance(v, str) or not _LABEL_VALUE.match(v):
            causes.append(cause("metadata.labels", f'Invalid value: "{v}": a valid label must be an empty string or '
                                "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                "alphanumeric character"))
    # finalizers must be qualified names; built-in kinds (validateKubeFinalizerName) also need a "/" unless
    # standard, while custom resources and CRDs (apimachinery's generic validation) do not
    standard = {"kubernetes", "orphan", "foregroundDeletion"}
    kube_rule = rt.crd is None and rt.group != "apiextensions.k8s.io"
    for i, fin in enumerate(meta.get("finalizers") or []):
        text = str(fin)
        if not _valid_qualified_name(text):
            causes.append(cause(f"metadata.finalizers[{i}]", f'Invalid value: "{fin}": a qualified name must '
                                "consist of alphanumeric characters, '-', '_' or '.'"))
        elif kube_rule and "/" not in text and text not in standard:
            causes.append(cause(f"metadata.finalizers[{i}]", f'Invalid value: "{fin}": name is neither a '
                                "standard finalizer name nor is it fully qualified"))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or any(not isinstance(v, str) for v in annotations.values()):
        causes.append(cause("metadata.annotations", "Invalid value: annotations must be a map of strings"))
    elif sum(len(k) + len(v) for k, v in annotations.items()) > 256 * 1024:
        causes.append(cause("metadata.annotations", "Too long: must have at most 262144 bytes", "FieldValueTooLong"))
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)


def _valid_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.match(name))


def check_identity(rt: ResourceType, obj: Any, namespace: str, name: str | None) -> dict[str, Any]:
    """Check a request body's shape, kind and namespace against the URL; fill ``apiVersion``/``kind`` if absent.

    Raises:
        APIError: 400 BadRequest for a non-object body, another kind/apiVersion, or a namespace or name that
        differs from the URL's.
    """
    if not isinstance(obj, dict):
        raise bad_request("the object provided is not a JSON object; send a single Kubernetes object as the body")
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if kind and kind != rt.kind:
        raise bad_request(f"the object provided is unrecognized (must be of type {rt.kind}): kind {kind!r} in the "
                          f"body does not match the resource {rt.plural!r} in the URL")
    if api_version and api_version != rt.api_version:
        group = api_version.rpartition("/")[0]
        if group != rt.group or api_version.rpartition("/")[2] not in (rt.served_versions or [rt.version]):
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected API version "
                              f"({rt.api_version})")
    rest = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    obj.clear()
    obj.update({"kind": rt.kind, "apiVersion": rt.api_version, **rest})
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if rt.namespaced:
        body_ns = meta.get("namespace")
        if body_ns and body_ns != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    if name is not None and meta.get("name") and meta["name"] != name:
        raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    return obj


def spec_of(rt: ResourceType, obj: dict[str, Any]) -> Any:
    """What ``generation`` tracks: everything but metadata and status (CRs with a status subresource and the
    built-in workloads), or everything but metadata (CRs without one)."""
    if rt.crd is not None and not rt.status_subresource:
        return {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def init_metadata(rt: ResourceType, obj: dict[str, Any], now: float) -> None:
    """Set uid, creationTimestamp and generation on a new object; drop client-set server fields."""
    meta = obj["metadata"]
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = rfc3339(now)
    for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(f, None)
    if rt.tracks_generation:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    if not meta.get("finalizers"):
        meta.pop("finalizers", None)


def carry_immutable(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Keep the fields clients cannot change on update (uid, creationTimestamp, deletion fields, generation)."""
    om, nm = old["metadata"], new["metadata"]
    for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if f in om:
            nm[f] = om[f]
        else:
            nm.pop(f, None)
    nm.pop("selfLink", None)
    if not nm.get("finalizers"):
        nm.pop("finalizers", None)


def apply_status_rules(rt: ResourceType, old: dict[str, Any] | None, new: dict[str, Any], subresource: str | None
                       ) -> dict[str, Any]:
    """Reference item 5: main writes keep the stored status; ``/status`` writes change only ``.status``.

    On create with a status subresource, the client's status is dropped (CRs) or reset by the defaults (pods);
    Nodes keep theirs, as on a real server.
    """
    if not rt.status_subresource:
        return new
    if subresource == "status":
        assert old is not None
        out = clone(old)
        out["metadata"] = new["metadata"]
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        # metadata other than the managed fields stays as stored
        keep = out["metadata"]
        out["metadata"] = clone(old["metadata"])
        if "managedFields" in keep:
            out["metadata"]["managedFields"] = keep["managedFields"]
        return out
    if old is None:
        # Nodes keep the status they are created with: the kubelet registers its Node with capacity and
        # conditions in one create (the real node strategy's PrepareForCreate does not reset status).
        if not (rt.kind == "Node" and rt.group == ""):
            new.pop("status", None)
    elif "status" in old:
        new["status"] = old["status"]
    else:
        new.pop("status", None)
    return new


def bump_generation(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Increment ``metadata.generation`` when the spec changed (reference item 2)."""
    if not rt.tracks_generation:
        return
    gen = int(old["metadata"].get("generation") or 1)
    if canonical(spec_of(rt, old)) != canonical(spec_of(rt, new)):
        gen += 1
    new["metadata"]["generation"] = gen


def same_content(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether an update changes nothing but resourceVersion and managedFields timestamps (a no-op write,
    which the real server answers without a new resourceVersion or event)."""

    def strip(o: dict[str, Any]) -> dict[str, Any]:
        o = dict(o)
        meta = dict(o.get("metadata") or {})
        meta.pop("resourceVersion", None)
        mf = meta.pop("managedFields", None)
        if mf:
            meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in mf]
        o["metadata"] = meta
        return o

    return canonical(strip(old)) == canonical(strip(new))


def check_finalizers_on_deleting(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """No new finalizers may be added once ``deletionTimestamp`` is set (reference item 6).

    Raises:
        APIError: 422 Invalid on ``metadata.finalizers``.
    """
    if not old["metadata"].get("deletionTimestamp"):
        return
    before = set(old["metadata"].get("finalizers") or [])
    added = [f for f in new["metadata"].get("finalizers") or [] if f not in before]
    if added:
        quoted = ", ".join(f'"{f}"' for f in added)
        raise invalid(rt.kind, rt.group, new["metadata"]["name"], [cause(
            "metadata.finalizers",
            f"Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers "
            f"[]string{{{quoted}}}", "FieldValueForbidden")])


def precondition_rv(rt: ResourceType, current: dict[str, Any], wanted: str | None) -> None:
    """Optimistic concurrency (reference item 3): a stale ``resourceVersion`` in the request → 409 Conflict."""
    if wanted and wanted != current["metadata"].get("resourceVersion"):
        from .errors import conflict

        raise conflict(rt.plural, rt.group, current["metadata"]["name"],
                       "the object has been modified; please apply your changes to the latest version and try again")


def ensure_dict(value: Any, what: str) -> dict[str, Any]:
    """``value`` as a dict, or a 400 naming ``what``."""
    if not isinstance(value, dict):
        raise APIError(400, "BadRequest", f"{what} must be a JSON object")
    return value
