"""Admission rules for Workspace (kaito.sh v1alpha1 and v1beta1): pure functions, local data only.

:func:`validate_workspace` takes the object (and the old object on UPDATE, and optionally the bring-your-own node
list) and returns a :class:`~kaito.webhook.verdict.Verdict`: warnings plus errors that each name the wire field
path and the fix. It never raises for any input (malformed objects are errors, not exceptions) and never does I/O.
The rules are upstream Kaito's (``shared/reference/kaito-inventory.md`` "Admission rules", numbered below) with
two deliberate differences: per-adapter rules run on CREATE too (upstream checks them only on UPDATE), and tuning
URLs are checked against an SSRF block list.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from kaito.api import constants as c
from kaito.api import workspace as wsapi
from kaito.api.meta import LabelSelector, LabelSelectorRequirement, ObjectMeta, selector_matches
from kaito.api.workspace import AnyWorkspace, parse_workspace
from kaito.presets.catalog import SKU, Catalog, ModelPreset, load_catalog
from kaito.presets.estimator import EstimateError, estimate
from kaito.webhook.ssrf import Resolver, url_problem
from kaito.webhook.verdict import Verdict, translate_validation_error

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
UNKNOWN_SKU_PREFIX = "Standard_N"
"""Unknown instance types with this prefix are tolerated (new Azure GPU sizes), with a warning (upstream)."""

_MODELS: list[type[BaseModel]] = [
    wsapi.WorkspaceV1beta1,
    wsapi.WorkspaceV1alpha1,
    wsapi.ResourceSpec,
    wsapi.InferenceSpec,
    wsapi.TuningSpec,
    wsapi.PresetSpec,
    wsapi.PresetOptions,
    wsapi.AdapterSpec,
    wsapi.DataSource,
    wsapi.DataDestination,
    wsapi.WorkspaceStatusV1beta1,
    LabelSelector,
    LabelSelectorRequirement,
    ObjectMeta,
]


def validate_workspace(
    obj: Any,
    old: Any = None,
    *,
    nodes: Sequence[Mapping[str, Any]] | None = None,
    catalog: Catalog | None = None,
    auto_provisioning: bool = True,
    resolve: Resolver | None = None,
) -> Verdict:
    """Admit or reject a Workspace.

    Args:
        obj: the Workspace as a wire dict (what the API server sends in ``AdmissionReview.request.object``).
        old: the stored Workspace on UPDATE (``request.oldObject``), else None; enables the immutability rules.
        nodes: Node dicts for bring-your-own checks (rule 6 BYO); None skips them.
        catalog: presets and SKUs (default: the packaged catalog).
        auto_provisioning: False when kaito runs without a node provisioner (then every workspace is BYO).
        resolve: optional DNS resolver for the SSRF guard (default: no DNS).

    Returns:
        The verdict; ``verdict.allowed`` is False when any rule failed.
    """
    verdict = Verdict()
    try:
        _validate(verdict, obj, old, nodes, catalog or load_catalog(), auto_provisioning, resolve)
    except Exception as exc:  # a rule bug must deny cleanly, never crash the webhook
        verdict.error("", f"internal error while validating ({type(exc).__name__}: {exc}); please report it")
    return verdict


def _validate(
    v: Verdict,
    obj: Any,
    old: Any,
    nodes: Sequence[Mapping[str, Any]] | None,
    catalog: Catalog,
    auto_provisioning: bool,
    resolve: Resolver | None,
) -> None:
    ws = _parse(v, obj)
    if ws is None:
        return
    if ws.metadata.deletion_timestamp:
        return  # being deleted: only finalizers change; never block their removal
    _rule_name(v, ws, creating=old is None)
    _rule_one_of_inference_tuning(v, ws)
    byo = bool(ws.resource.preferred_nodes) or not auto_provisioning
    sku = _rule_resource(v, ws, catalog, byo)
    preset = None
    if ws.inference is not None:
        preset = _rule_inference(v, ws, catalog)
    elif ws.tuning is not None:
        preset = _rule_tuning(v, ws, catalog, resolve)
    if preset is not None:
        _rule_gpu_memory(v, ws, preset, sku, byo, nodes, catalog)
    if old is not None:
        old_ws = _parse(Verdict(), old)
        if old_ws is not None:
            _rule_immutable(v, ws, old_ws)


def _parse(v: Verdict, obj: Any) -> AnyWorkspace | None:
    if not isinstance(obj, Mapping):
        v.error("", f"the object must be a mapping (a Workspace), got {type(obj).__name__}")
        return None
    try:
        wsapi.workspace_model_for(obj.get("apiVersion"))
    except ValueError as exc:
        v.error("apiVersion", str(exc).split(": ", 1)[1])
        return None
    if obj.get("kind") != c.WORKSPACE_KIND:
        v.error("kind", f"{obj.get('kind')!r} is not handled here; set kind: Workspace")
        return None
    if "spec" in obj:
        v.error(
            "spec",
            "Workspace has no spec; move resource, inference and tuning to the top level (next to metadata)",
        )
        return None
    try:
        return parse_workspace({k: val for k, val in obj.items() if k != "status"}, strict=True)
    except ValidationError as exc:
        v.errors.extend(translate_validation_error(exc, _MODELS))
        return None


# --- rule 1 ------------------------------------------------------------------------------------------------------
MAX_NAME_LENGTH = 52
"""Longest Workspace name admitted on CREATE. The StatefulSet named after the Workspace labels its pods
``controller-revision-hash: <name>-<hash>`` with a hash of up to 10 characters, and label values are at most 63
characters (Kubernetes API conventions), so a longer name yields a StatefulSet whose pods the API server rejects
(the known 52-character StatefulSet limit, kubernetes/kubernetes#64023)."""


def _rule_name(v: Verdict, ws: AnyWorkspace, *, creating: bool) -> None:
    name = ws.metadata.name
    if not name:
        v.error("metadata.name", "is required; set a lower-case name such as workspace-phi-3-mini")
    elif len(name) > 63 or not DNS1123_LABEL.match(name):
        v.error(
            "metadata.name",
            f"{name!r} is not a DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending "
            "with a letter or digit); it names the Service, e.g. workspace-phi-3-mini",
        )
    elif creating and len(name) > MAX_NAME_LENGTH:  # on UPDATE the name is fixed: never block finalizer removal
        v.error(
            "metadata.name",
            f"{name!r} has {len(name)} characters; Workspace names are limited to {MAX_NAME_LENGTH} so that the "
            "pods of its StatefulSet get a valid controller-revision-hash label (<name>-<hash>, at most 63 "
            "characters); choose a shorter name",
        )


def _rule_one_of_inference_tuning(v: Verdict, ws: AnyWorkspace) -> None:
    if ws.inference is not None and ws.tuning is not None:
        v.error("tuning", "inference and tuning are mutually exclusive; use one Workspace to tune, another to serve")
    elif ws.inference is None and ws.tuning is None:
        v.error("inference", "set exactly one of inference (serve a model) or tuning (fine-tune a model)")


# --- rule 2 + label selector --------------------------------------------------------------------------------------
def _rule_resource(v: Verdict, ws: AnyWorkspace, catalog: Catalog, byo: bool) -> SKU | None:
    res = ws.resource
    _rule_selector(v, res.label_selector)
    if not byo and res.label_selector.match_expressions:
        v.warn(
            "resource.labelSelector.matchExpressions: nodes kaito provisions carry only the matchLabels; the "
            "expressions must hold for those labels too, or the pods will not schedule"
        )
    if res.preferred_nodes:
        v.warn("resource.preferredNodes is deprecated; label your nodes and select them with resource.labelSelector")
        for i, node in enumerate(res.preferred_nodes):
            if not DNS1123_SUBDOMAIN.match(node) or len(node) > 253:
                v.error(f"resource.preferredNodes[{i}]", f"{node!r} is not a valid node name")
    instance = res.instance_type
    if not instance:
        if not byo:
            v.error(
                "resource.instanceType",
                "is required when kaito provisions the nodes; set a GPU instance type such as Standard_NC6s_v3 "
                "(or local-cpu for kaito dev)",
            )
        return None
    sku = catalog.find_sku(instance)
    if sku is not None:
        return sku
    if instance.startswith(UNKNOWN_SKU_PREFIX):
        v.warn(
            f"resource.instanceType {instance!r} is not in kaito's SKU catalog; the GPU memory check is skipped "
            "and pods request no GPUs unless the nodes report them"
        )
        return None
    if byo:
        return None
    try:
        catalog.sku(instance)
    except KeyError as exc:
        v.error("resource.instanceType", f"{exc}; see docs/api.md for supported instance types")
    return None


def _rule_selector(v: Verdict, sel: LabelSelector) -> None:
    path = "resource.labelSelector"
    if not sel.match_labels and not sel.match_expressions:
        v.error(path, "must select the workspace's nodes; set matchLabels, e.g. {apps: phi-3}")
        return
    for key, value in (sel.match_labels or {}).items():
        _check_label_key(v, f"{path}.matchLabels", key)
        if len(value) > 63 or not LABEL_VALUE.match(value):
            v.error(
                f"{path}.matchLabels.{key}",
                f"{value!r} is not a valid label value (at most 63 characters of A-Z, a-z, 0-9, '-', '_', '.', "
                "starting and ending with a letter or digit)",
            )
    for i, expr in enumerate(sel.match_expressions or []):
        epath = f"{path}.matchExpressions[{i}]"
        _check_label_key(v, epath, expr.key, field="key")
        if expr.operator in ("In", "NotIn") and not expr.values:
            v.error(f"{epath}.values", f"must not be empty for operator {expr.operator}; list at least one value")
        if expr.operator in ("Exists", "DoesNotExist") and expr.values:
            v.error(f"{epath}.values", f"must be empty for operator {expr.operator}; remove values")


def _check_label_key(v: Verdict, path: str, key: str, field: str | None = None) -> None:
    prefix, _, name = key.rpartition("/")
    ok = bool(name) and len(name) <= 63 and bool(LABEL_NAME.match(name))
    if prefix:
        ok = ok and len(prefix) <= 253 and bool(DNS1123_SUBDOMAIN.match(prefix))
    if not ok:
        where = f"{path}.{field}" if field else path
        v.error(
            where,
            f"{key!r} is not a valid label key ([prefix/]name, name at most 63 characters of A-Z, a-z, 0-9, "
            "'-', '_', '.', starting and ending with a letter or digit)",
        )


# --- rules 3, 4, 5 ------------------------------------------------------------------------------------------------
def _rule_preset_name(v: Verdict, path: str, name: str, catalog: Catalog) -> ModelPreset | None:
    if name in catalog.deprecated:
        v.error(path, catalog.deprecated_message(name))
        return None
    try:
        return catalog.preset(name)
    except KeyError as exc:
        v.error(path, f"{exc}; run `kaito plan --list-presets` for the supported presets")
        return None


def _rule_preset_options(v: Verdict, base: str, spec: wsapi.PresetSpec) -> None:
    opts = spec.preset_options
    if spec.access_mode == "private" and not (opts and opts.image):
        v.error(
            f"{base}.presetOptions.image",
            "is required with accessMode: private; set the private image that holds the weights",
        )
    elif spec.access_mode == "public" and opts is not None and opts.image:
        v.warn(f"{base}.presetOptions.image is ignored with accessMode: public; set accessMode: private to use it")
    for i, secret in enumerate((opts.image_pull_secrets if opts else None) or []):
        _check_secret_name(v, f"{base}.presetOptions.imagePullSecrets[{i}]", secret)


def _check_object_name(v: Verdict, path: str, name: str) -> None:
    if not name or len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        v.error(path, f"{name!r} is not a valid object name (lower-case DNS subdomain, e.g. my-config)")


def _check_secret_name(v: Verdict, path: str, name: str) -> None:
    """Secret names are only warned about: the seed's examples carry placeholders (ACR_REGISTRY_SECRET_HERE) that
    users replace; the pod cannot start until a Secret of a valid name exists."""
    if not name:
        v.error(path, "must not be empty; name a Secret in the workspace namespace")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        v.warn(f"{path}: {name!r} is not a valid Secret name; replace it with the name of an existing Secret")


def _rule_inference(v: Verdict, ws: AnyWorkspace, catalog: Catalog) -> ModelPreset | None:
    inf = ws.inference
    assert inf is not None
    preset: ModelPreset | None = None
    if inf.preset is not None and inf.template is not None:
        v.error("inference.template", "preset and template are mutually exclusive; remove one of them")
    elif inf.preset is None and inf.template is None:
        v.error("inference.preset", "set a preset (e.g. name: phi-3-mini-4k-instruct) or a pod template")
    if inf.preset is not None:
        preset = _rule_preset_name(v, "inference.preset.name", inf.preset.name, catalog)
        _rule_preset_options(v, "inference.preset", inf.preset)
    if inf.template is not None and inf.preset is None:
        spec = inf.template.get("spec")
        containers = spec.get("containers") if isinstance(spec, dict) else None
        if not isinstance(containers, list) or not containers:
            v.error("inference.template.spec.containers", "must list at least one container")
        elif not all(isinstance(x, dict) and x.get("name") and x.get("image") for x in containers):
            v.error("inference.template.spec.containers", "every container needs a name and an image")
        if not isinstance(inf.template.get("metadata", {}), dict):
            v.error("inference.template.metadata", "must be an object (labels, annotations)")
    if inf.config is not None:
        _check_object_name(v, "inference.config", inf.config)
    if inf.adapters:
        _rule_adapters(v, inf.adapters, has_preset=inf.preset is not None)
    if inf.preset is not None and ws.resource.count > 1:
        v.warn(
            f"resource.count: {ws.resource.count} nodes, but kaito-py's inference runtime serves a preset from one "
            "node; the pods on the other nodes stop with a 'rank' error (multi-node serving is not implemented, "
            "see docs/runtime.md); use count 1 with an instance type that fits the model"
        )
    return preset


def _rule_adapters(v: Verdict, adapters: list[wsapi.AdapterSpec], *, has_preset: bool) -> None:
    if not has_preset:
        v.error("inference.adapters", "adapters need inference.preset (a template workspace loads its own)")
    if len(adapters) > c.MAX_ADAPTERS:
        v.error(
            "inference.adapters",
            f"has {len(adapters)} adapters; at most {c.MAX_ADAPTERS} are supported, remove "
            f"{len(adapters) - c.MAX_ADAPTERS}",
        )
    seen: dict[str, int] = {}
    for i, adapter in enumerate(adapters):
        base = f"inference.adapters[{i}]"
        src = adapter.source
        name = src.name
        if not name:
            v.error(f"{base}.source.name", "is required; name the adapter (it becomes /mnt/adapter/<name>)")
        elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            v.error(
                f"{base}.source.name",
                f"{name!r} is not a DNS subdomain (lower-case a-z, 0-9, '-' and '.'); e.g. phi-3-adapter",
            )
        elif name in seen:
            v.error(
                f"{base}.source.name", f"{name!r} duplicates inference.adapters[{seen[name]}]; names must be unique"
            )
        else:
            seen[name] = i
        if src.urls:
            v.error(f"{base}.source.urls", "adapters load from an image or a volume, not URLs; set source.image")
        if src.image and src.volume_source:
            v.error(f"{base}.source", "set only one of source.image and source.volumeSource")
        elif not src.image and not src.volume_source and not src.urls:
            v.error(f"{base}.source", "set source.image (an adapter image) or source.volumeSource")
        if src.image is not None:
            _check_image(v, f"{base}.source.image", src.image)
        for j, secret in enumerate(src.image_pull_secrets or []):
            _check_secret_name(v, f"{base}.source.imagePullSecrets[{j}]", secret)
        _check_strength(v, f"{base}.strength", adapter.strength)


def _check_strength(v: Verdict, path: str, strength: str | None) -> None:
    if strength is None:
        return
    try:
        value = float(strength)
    except ValueError:
        v.error(path, f'{strength!r} is not a number; use a decimal string between "0.0" and "1.0"')
        return
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        v.error(path, f'{strength!r} is outside [0, 1]; use a decimal string between "0.0" and "1.0"')


def _check_image(v: Verdict, path: str, image: str) -> None:
    if not image.strip() or any(ch.isspace() for ch in image):
        v.error(path, f"{image!r} is not an image reference; use registry/repository:tag")


# --- rule 7 -------------------------------------------------------------------------------------------------------
def _rule_tuning(v: Verdict, ws: AnyWorkspace, catalog: Catalog, resolve: Resolver | None) -> ModelPreset | None:
    t = ws.tuning
    assert t is not None
    preset: ModelPreset | None = None
    if t.preset is None:
        v.error("tuning.preset", "is required; set the base model, e.g. name: phi-3-mini-4k-instruct")
    else:
        preset = _rule_preset_name(v, "tuning.preset.name", t.preset.name, catalog)
        _rule_preset_options(v, "tuning.preset", t.preset)
        if preset is not None and not preset.tuning:
            tunable = ", ".join(sorted(p.name for p in catalog.presets.values() if p.tuning))
            v.error("tuning.preset.name", f"preset {preset.name!r} does not support tuning; use one of {tunable}")
    if t.method is None:
        v.error("tuning.method", "is required; set lora or qlora")
    if ws.resource.count != 1:
        v.error("resource.count", f"tuning runs on one node; set resource.count to 1 (got {ws.resource.count})")
    if t.config is not None:
        _check_object_name(v, "tuning.config", t.config)
    _rule_tuning_input(v, t.input, resolve)
    _rule_tuning_output(v, t.output)
    return preset


def _rule_tuning_input(v: Verdict, src: wsapi.DataSource | None, resolve: Resolver | None) -> None:
    if src is None:
        v.error("tuning.input", "is required; set exactly one of urls, image or volumeSource")
        return
    given = [k for k, val in (("urls", src.urls), ("image", src.image), ("volumeSource", src.volume_source)) if val]
    if len(given) != 1:
        detail = f"got {', '.join(given)}" if given else "got none"
        v.error("tuning.input", f"set exactly one of urls, image or volumeSource ({detail})")
    for i, url in enumerate(src.urls or []):
        problem = url_problem(url, resolve)
        if problem:
            v.error(f"tuning.input.urls[{i}]", problem)
    if src.image is not None:
        _check_image(v, "tuning.input.image", src.image)
    for j, secret in enumerate(src.image_pull_secrets or []):
        _check_secret_name(v, f"tuning.input.imagePullSecrets[{j}]", secret)


def _rule_tuning_output(v: Verdict, dst: wsapi.DataDestination | None) -> None:
    if dst is None:
        v.error("tuning.output", "is required; set image (+ imagePushSecret) or volumeSource")
        return
    if bool(dst.image) == bool(dst.volume_source):
        v.error("tuning.output", "set exactly one of image (+ imagePushSecret) or volumeSource")
    if dst.image:
        _check_image(v, "tuning.output.image", dst.image)
        if not dst.image_push_secret:
            v.error(
                "tuning.output.imagePushSecret",
                "is required with output.image; name a docker-registry Secret that can push to the registry",
            )
    if dst.image_push_secret:
        _check_secret_name(v, "tuning.output.imagePushSecret", dst.image_push_secret)


# --- rule 6 -------------------------------------------------------------------------------------------------------
def _bypass(ws: AnyWorkspace) -> bool:
    return (ws.metadata.annotations or {}).get(c.ANNOTATION_BYPASS_RESOURCE_CHECKS, "").lower() == "true"


def _rule_gpu_memory(
    v: Verdict,
    ws: AnyWorkspace,
    preset: ModelPreset,
    sku: SKU | None,
    byo: bool,
    nodes: Sequence[Mapping[str, Any]] | None,
    catalog: Catalog,
) -> None:
    if not preset.requires_gpu:
        return
    if _bypass(ws):
        v.warn(f"{c.ANNOTATION_BYPASS_RESOURCE_CHECKS} is set: the GPU memory check is skipped")
        return
    count = ws.resource.count
    if byo and nodes is not None:
        _rule_byo_nodes(v, ws, preset, nodes)
        return
    if sku is None:
        return
    if sku.gpu_count == 0:
        gpu_skus = _single_node_skus(preset, sku.cloud, catalog)[:2]
        hint = f"use {' or '.join(gpu_skus)}" if gpu_skus else "use a GPU instance type"
        v.error(
            "resource.instanceType",
            f"{sku.name!r} has no GPU and {preset.name} needs NVIDIA GPUs; {hint} (or a CPU preset such as "
            "smollm2-135m-instruct)",
        )
        return
    total = count * sku.gpu_memory_gib
    if total < preset.weights_size_gib:
        needed = math.ceil(preset.weights_size_gib / sku.gpu_memory_gib)
        with contextlib.suppress(EstimateError):
            needed = max(needed, estimate(preset, sku).node_count)
        bigger = _single_node_skus(preset, sku.cloud, catalog)
        use = f"Use {bigger[0]} or set" if bigger else "Set"
        v.error(
            "resource.instanceType",
            f"Insufficient total GPU memory: {count} x {sku.name!r} has {total:g} GiB of GPU memory; {preset.name} "
            f"needs {preset.weights_size_gib:g} GiB. {use} resource.count to {needed}.",
        )
        return
    try:
        est = estimate(preset, sku)
    except EstimateError as exc:
        v.warn(f"resource.instanceType: {exc}; the runtime may run out of memory")
        return
    if ws.tuning is None and est.node_count > count:
        v.warn(
            f"{preset.name} needs {est.node_count} node(s) of {sku.name} by kaito's estimate (weights plus KV cache "
            f"for {est.max_model_len} tokens); kaito will provision {est.node_count}, not resource.count={count}"
        )


def _single_node_skus(preset: ModelPreset, cloud: str, catalog: Catalog) -> list[str]:
    """SKUs of ``cloud`` on which the estimator fits ``preset`` on one node, smallest GPU memory first."""
    fits = []
    for candidate in catalog.suggest_skus(preset.weights_size_gib, cloud=cloud, limit=len(catalog.skus)):
        try:
            if estimate(preset, candidate).node_count == 1:
                fits.append(candidate.name)
        except EstimateError:
            continue
    return fits


def _rule_byo_nodes(v: Verdict, ws: AnyWorkspace, preset: ModelPreset, nodes: Sequence[Mapping[str, Any]]) -> None:
    selector = ws.resource.label_selector.to_wire()
    preferred = set(ws.resource.preferred_nodes or [])
    matching = []
    for node in nodes:
        meta = node.get("metadata") if isinstance(node, Mapping) else None
        if not isinstance(meta, Mapping):
            continue
        labels = meta.get("labels") or {}
        if preferred and meta.get("name") not in preferred:
            continue
        if selector_matches(selector, labels):
            matching.append((str(meta.get("name")), labels))
    if not matching:
        return  # nothing to check yet; the controller waits for matching nodes
    configs = {
        (lbl.get(c.LABEL_GPU_PRODUCT), lbl.get(c.LABEL_GPU_COUNT), lbl.get(c.LABEL_GPU_MEMORY)) for _, lbl in matching
    }
    if len(configs) > 1:
        desc = ", ".join(f"{n} ({lbl.get(c.LABEL_GPU_PRODUCT)} x{lbl.get(c.LABEL_GPU_COUNT)})" for n, lbl in matching)
        v.error(
            "resource.labelSelector",
            f"selects nodes with different GPUs ({desc}); select nodes with one GPU type, count and memory",
        )
        return
    if len(matching) < ws.resource.count:
        v.warn(
            f"resource.labelSelector selects {len(matching)} node(s) but resource.count is "
            f"{ws.resource.count}; the workspace waits until {ws.resource.count} matching nodes exist"
        )
    product, count_label, memory_label = next(iter(configs))
    if count_label is None or memory_label is None:
        v.error(
            "resource.labelSelector",
            f"selected nodes lack the {c.LABEL_GPU_COUNT}/{c.LABEL_GPU_MEMORY} labels (NVIDIA GPU feature "
            "discovery sets them); label the nodes or set the kaito.sh/bypass-resource-checks annotation",
        )
        return
    try:
        gpus, mib = int(count_label), int(memory_label)
    except ValueError:
        v.error("resource.labelSelector", f"selected nodes have non-numeric GPU labels ({count_label}, {memory_label})")
        return
    per_node = gpus * mib / 1024
    total = per_node * min(ws.resource.count, len(matching))
    if total < preset.weights_size_gib:
        needed = math.ceil(preset.weights_size_gib / per_node) if per_node else 0
        v.error(
            "resource.count",
            f"Insufficient total GPU memory: the selected {product} nodes have {per_node:g} GiB each; "
            f"{preset.name} needs {preset.weights_size_gib:g} GiB. Select {needed} node(s) and set resource.count "
            f"to {needed}.",
        )


# --- rule 8 -------------------------------------------------------------------------------------------------------
def _rule_immutable(v: Verdict, new: AnyWorkspace, old: AnyWorkspace) -> None:
    fix = "delete and re-create the workspace to change it"
    if (old.inference is None) != (new.inference is None) or (old.tuning is None) != (new.tuning is None):
        field = "inference" if (old.inference is None) != (new.inference is None) else "tuning"
        v.error(field, "a workspace cannot switch between inference and tuning; create a new Workspace")
        return
    pairs: list[tuple[str, Any, Any]] = [
        ("resource.count", old.resource.count, new.resource.count),
        ("resource.instanceType", old.resource.instance_type, new.resource.instance_type),
        ("resource.labelSelector", old.resource.label_selector.to_wire(), new.resource.label_selector.to_wire()),
    ]
    if old.inference is not None and new.inference is not None:
        pairs.append(("inference.preset", _wire(old.inference.preset), _wire(new.inference.preset)))
    if old.tuning is not None and new.tuning is not None:
        pairs += [
            ("tuning.preset", _wire(old.tuning.preset), _wire(new.tuning.preset)),
            ("tuning.method", old.tuning.method, new.tuning.method),
            (
                "tuning.input.name",
                old.tuning.input.name if old.tuning.input else None,
                new.tuning.input.name if new.tuning.input else None,
            ),
        ]
    for path, before, after in pairs:
        if before != after:
            v.error(path, f"is immutable (was {_short(before)}, now {_short(after)}); {fix}")


def _wire(model: Any) -> Any:
    return model.to_wire() if model is not None else None


def _short(value: Any) -> str:
    """``value`` as the user wrote it (compact JSON, ``null`` for absent), cut to 80 characters."""
    text = json.dumps(value, separators=(", ", ": "), sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
