"""The resource types the server knows: the built-in kinds of reference item 10 and the CRD-served ones.

A :class:`ResourceType` is one REST resource (``apps/v1 deployments``): its kind, scope, short names,
subresources, whether it tracks ``metadata.generation`` and, for CRDs, the schema and printer columns of the
served version. The built-in table mirrors ``kubectl api-resources`` on a 1.30 cluster for these kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    """One served REST resource.

    ``subresources`` names the served subresources (``status``, ``scale``, ``log``, ``binding``);
    ``status_subresource`` means writes to the main resource ignore ``.status`` and ``/status`` writes change only
    it; ``tracks_generation`` means ``metadata.generation`` starts at 1 and increments on spec changes (workloads,
    CRs, CRDs, webhook configurations: the kinds whose registry strategy sets it). ``crd`` is the
    CustomResourceDefinition name for custom resources (they answer 415 to strategic merge patches).
    """

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    subresources: set[str] = field(default_factory=set)
    status_subresource: bool = True
    tracks_generation: bool = False
    crd: str | None = None
    schema: dict[str, Any] | None = None
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    scale_paths: dict[str, str] | None = None
    storage_version: str | None = None
    served_versions: list[str] = field(default_factory=list)
    virtual: bool = False
    """Create-only and never stored (access reviews): the server answers the create itself."""

    @property
    def api_version(self) -> str:
        """``v1`` or ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The list kind (``PodList``)."""
        return f"{self.kind}List"

    @property
    def key(self) -> tuple[str, str]:
        """The storage key: (group, plural); every served version of a resource shares one store."""
        return (self.group, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        """The ``APIResource`` entries for ``/api/v1`` or ``/apis/{g}/{v}`` (resource and subresources)."""
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create"] if self.virtual else list(VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        for sub in sorted(self.subresources):
            entry: dict[str, Any] = {"name": f"{self.plural}/{sub}", "singularName": "", "namespaced": self.namespaced,
                                     "kind": self.kind, "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                entry.update(kind="Scale", group="autoscaling", version="v1")
            elif sub == "log":
                entry.update(kind="Pod", verbs=["get"])
            elif sub == "binding":
                entry.update(kind="Binding", verbs=["create"])
            elif sub == "eviction":
                entry.update(kind="Eviction", group="policy", version="v1", verbs=["create"])
            out.append(entry)
        return out


def _rt(api_version: str, plural: str, kind: str, namespaced: bool, short: str = "", subs: str = "status",
        gen: bool = False, cats: str = "", singular: str | None = None) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(
        group=group, version=version, plural=plural, singular=singular or kind.lower(), kind=kind,
        namespaced=namespaced, short_names=[s for s in short.split(",") if s],
        categories=[c for c in cats.split(",") if c], subresources={s for s in subs.split(",") if s},
        status_subresource="status" in subs.split(","), tracks_generation=gen,
        served_versions=[version], storage_version=version,
    )


def builtin_types() -> list[ResourceType]:
    """The built-in resource types (reference item 10 plus the few kubectl and controllers touch)."""
    types = [
        _rt("v1", "namespaces", "Namespace", False, "ns", "status,finalize"),
        _rt("v1", "nodes", "Node", False, "no", "status"),
        _rt("v1", "pods", "Pod", True, "po", "status,log,binding,eviction", cats="all"),
        _rt("v1", "services", "Service", True, "svc", "status", cats="all"),
        _rt("v1", "endpoints", "Endpoints", True, "ep", ""),
        _rt("v1", "configmaps", "ConfigMap", True, "cm", ""),
        _rt("v1", "secrets", "Secret", True, "", ""),
        _rt("v1", "serviceaccounts", "ServiceAccount", True, "sa", ""),
        _rt("v1", "events", "Event", True, "ev", ""),
        _rt("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, "pvc", "status"),
        _rt("v1", "persistentvolumes", "PersistentVolume", False, "pv", "status"),
        _rt("events.k8s.io/v1", "events", "Event", True, "ev", ""),
        _rt("coordination.k8s.io/v1", "leases", "Lease", True, "", ""),
        _rt("apps/v1", "deployments", "Deployment", True, "deploy", "status,scale", gen=True, cats="all"),
        _rt("apps/v1", "statefulsets", "StatefulSet", True, "sts", "status,scale", gen=True, cats="all"),
        _rt("apps/v1", "replicasets", "ReplicaSet", True, "rs", "status,scale", gen=True, cats="all"),
        _rt("apps/v1", "daemonsets", "DaemonSet", True, "ds", "status", gen=True, cats="all"),
        _rt("apps/v1", "controllerrevisions", "ControllerRevision", True, "", ""),
        _rt("batch/v1", "jobs", "Job", True, "", "status", gen=True, cats="all"),
        _rt("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False, "crd,crds",
            "status", gen=True),
        _rt("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration",
            False, "", "", gen=True),
        _rt("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration",
            False, "", "", gen=True),
        _rt("rbac.authorization.k8s.io/v1", "roles", "Role", True, "", ""),
        _rt("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True, "", ""),
        _rt("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False, "", ""),
        _rt("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False, "", ""),
        _rt("scheduling.k8s.io/v1", "priorityclasses", "PriorityClass", False, "pc", ""),
        _rt("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True, "pdb", "status", gen=True),
    ]
    for plural, kind, namespaced in (("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
                                     ("subjectaccessreviews", "SubjectAccessReview", False),
                                     ("localsubjectaccessreviews", "LocalSubjectAccessReview", True)):
        review = _rt("authorization.k8s.io/v1", plural, kind, namespaced, "", "")
        review.virtual = True
        types.append(review)
    # services' main-resource writes keep status like the real strategy; configmaps etc. have no status at all.
    return types


# Strategic-merge-patch merge keys of the built-in types (the ``patchMergeKey`` struct tags of k8s.io/api).
# Keyed by field name; ``ports`` is special-cased (Service ``spec.ports`` merges by ``port``, container ports by
# ``containerPort``). Lists not named here are atomic (replaced whole), as for ``tolerations``, ``args``, ``command``.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "env": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "taints": "key",
    "addresses": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "ephemeralContainerStatuses": "name",
    "resourceClaims": "name",
    "schedulingGates": "name",
}

# Lists of primitives merged as sets (``patchStrategy:"merge"`` on a []string).
MERGE_SETS: frozenset[str] = frozenset({"finalizers"})


def merge_key(kind: str, path: tuple[str, ...]) -> str | None:
    """The strategic merge key of the list at ``path`` (field names, no indices) in a built-in ``kind``.

    Returns None for atomic lists.
    """
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        if kind == "Service" and path == ("spec", "ports"):
            return "port"
        if "containers" in path or "initContainers" in path or "ephemeralContainers" in path:
            return "containerPort"
        return None
    if name == "conditions" and path[0] != "status":
        return None
    return MERGE_KEYS.get(name)
