"""Discovery documents (reference item 9): ``/api``, ``/api/v1``, ``/apis``, ``/apis/{g}``, ``/apis/{g}/{v}``,
both the legacy per-group-version form and the aggregated ``apidiscovery.k8s.io/v2`` form kubectl asks for first
(``Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``). Versions are ordered by
Kubernetes version priority (GA > beta > alpha, then higher numbers), the first being the preferred version.
"""

from __future__ import annotations

import re
from typing import Any

from .resources import VERBS, ResourceType

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key (smaller first) implementing ``version.CompareKubeAwareVersionStrings``."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor)


def wants_aggregated(accept: str) -> str | None:
    """The aggregated discovery media type the Accept header asks for, if any."""
    if "as=APIGroupDiscoveryList" not in accept:
        return None
    for part in accept.split(","):
        if "as=APIGroupDiscoveryList" in part:
            return AGGREGATED_V2 if "v=v2;" in part.replace(" ", "") + ";" and "v2beta1" not in part \
                else AGGREGATED_V2BETA1
    return None


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _sorted_versions(groups: dict[tuple[str, str], list[ResourceType]], group: str) -> list[str]:
    return sorted({v for (g, v) in groups if g == group}, key=version_priority)


def api_group_list(groups: dict[tuple[str, str], list[ResourceType]]) -> dict[str, Any]:
    """``GET /apis``: every named group with its versions and preferred version."""
    names = sorted({g for (g, _) in groups if g})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(groups, g) for g in names]}


def api_group(groups: dict[tuple[str, str], list[ResourceType]], group: str) -> dict[str, Any]:
    """``GET /apis/{group}``."""
    versions = _sorted_versions(groups, group)
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs,
            "preferredVersion": gvs[0] if gvs else {}}


def resource_list(group: str, version: str, types: list[ResourceType]) -> dict[str, Any]:
    """``GET /api/v1`` or ``/apis/{g}/{v}``: the APIResourceList."""
    resources = [entry for rt in sorted(types, key=lambda t: t.plural) for entry in rt.discovery()]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": ["create"] if rt.virtual else list(VERBS),
    }
    if rt.short_names:
        out["shortNames"] = list(rt.short_names)
    if rt.categories:
        out["categories"] = list(rt.categories)
    subs = []
    for entry in rt.discovery()[1:]:
        sub = entry["name"].split("/", 1)[1]
        subs.append({"subresource": sub,
                     "responseKind": {"group": entry.get("group", rt.group), "version": entry.get("version",
                                                                                                   rt.version),
                                      "kind": entry["kind"]},
                     "verbs": entry["verbs"]})
    if subs:
        out["subresources"] = subs
    return out


def aggregated(groups: dict[tuple[str, str], list[ResourceType]], legacy: bool, media_type: str) -> dict[str, Any]:
    """The APIGroupDiscoveryList for ``/api`` (``legacy``: the core group only) or ``/apis``."""
    names = [""] if legacy else sorted({g for (g, _) in groups if g})
    items = []
    for group in names:
        versions = []
        for v in _sorted_versions(groups, group):
            versions.append({"version": v, "freshness": "Current",
                             "resources": [_aggregated_resource(rt) for rt in sorted(groups[(group, v)],
                                                                                     key=lambda t: t.plural)]})
        if versions:
            items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
    api_version = "apidiscovery.k8s.io/v2" if "v=v2;" in media_type + ";" and "v2beta1" not in media_type \
        else "apidiscovery.k8s.io/v2beta1"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


def version_info() -> dict[str, Any]:
    """``GET /version``: reports Kubernetes 1.30 (the API surface this emulator follows)."""
    return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-kreconcile", "gitCommit": "kreconcile",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0",
            "compiler": "gc", "platform": "linux/amd64"}
