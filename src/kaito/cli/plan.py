"""``kaito plan FILE.yaml``: an offline dry run of a Workspace.

Validates it with the admission rules, then prints the chosen preset, instance type, node count, GPUs and
parallelism, and (``-o yaml``/``-o json``) every object the operator would create: NodeClaims, Services,
ConfigMaps, the StatefulSet or the tuning Job — built by the same :mod:`kaito.workloads` functions the controllers
use. A tuning Workspace's ``tuning.config`` ConfigMap is read from the same file (or ``--tuning-config``), so the
printed ``<ws>-tuning-config`` and the Job's config hash are the ones the operator creates. Local data only: no
cluster, no model hub. Exit codes: 0 every workspace admitted, 1 any rejected, 2 the file cannot be read or parsed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from kaito.api import constants as c
from kaito.api.workspace import parse_workspace
from kaito.api.yamlutil import dump_yaml_all
from kaito.presets.catalog import Catalog, load_catalog
from kaito.webhook.rules import validate_workspace
from kaito.webhook.training_config import validate_training_config
from kaito.workloads.plan import PlanError, WorkloadPlan, plan_workspace


def register(subparsers: Any) -> None:
    """Add ``kaito plan`` to the ``kaito`` parser."""
    parser = subparsers.add_parser(
        "plan",
        help="validate a Workspace offline and show what the operator would create",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", help="Workspace YAML (several documents allowed; '-' reads stdin)")
    parser.add_argument("-o", "--output", choices=("text", "yaml", "json"), default="text", help="output format")
    parser.add_argument("--old", type=Path, help="the current Workspace, to check an update (immutable fields)")
    parser.add_argument("--nodes", type=Path, help="YAML list (or v1 List) of Nodes for bring-your-own checks")
    parser.add_argument(
        "--no-auto-provisioning", action="store_true", help="the cluster has no node provisioner (BYO nodes only)"
    )
    parser.add_argument(
        "--tuning-config",
        type=Path,
        help="training_config.yaml (the content of the Workspace's tuning.config ConfigMap): checked against "
        "tuning.method and shown in <ws>-tuning-config and the Job's config hash",
    )
    parser.add_argument(
        "--max-model-len", type=int, help="context length to size GPUs for (default min(token limit, 8192))"
    )
    parser.add_argument("--list-presets", action="store_true", help="list the model presets and exit")
    parser.add_argument("--list-skus", action="store_true", help="list the instance types and exit")
    parser.set_defaults(func=run)


def _load_docs(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _nodes(path: Path | None) -> list[dict[str, Any]] | None:
    if path is None:
        return None
    docs = _load_docs(str(path))
    nodes: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, list):
            nodes.extend(doc)
        elif isinstance(doc, dict) and "items" in doc:
            nodes.extend(doc["items"] or [])
        elif isinstance(doc, dict):
            nodes.append(doc)
    return nodes


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Execute ``kaito plan`` with parsed ``args``; writes to ``out`` (default stdout), returns the exit code."""
    out = out or sys.stdout
    catalog = load_catalog()
    if args.list_presets:
        _list_presets(catalog, out)
        return 0
    if args.list_skus:
        _list_skus(catalog, out)
        return 0
    if args.max_model_len is not None and args.max_model_len < 1:
        print(f"error: --max-model-len must be >= 1, got {args.max_model_len}", file=sys.stderr)
        return 2
    if not args.file:
        print("error: give a Workspace file (or --list-presets / --list-skus)", file=sys.stderr)
        return 2
    try:
        docs = _load_docs(args.file)
        old_docs = _load_docs(str(args.old)) if args.old else []
        nodes = _nodes(args.nodes)
        training_config_text = args.tuning_config.read_text(encoding="utf-8") if args.tuning_config else None
        training_config = _load_docs(str(args.tuning_config))[0] if args.tuning_config else None
    except (OSError, yaml.YAMLError, IndexError) as exc:
        print(f"error: cannot read input: {exc}", file=sys.stderr)
        return 2
    if not docs:
        print(f"error: {args.file} holds no YAML documents", file=sys.stderr)
        return 2
    auto = not args.no_auto_provisioning
    status = 0
    objects: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    workspaces = [d for d in docs if not isinstance(d, dict) or d.get("kind") in (None, "Workspace")]
    for doc in docs:
        if doc not in workspaces:
            name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
            print(f"note: skipped {doc.get('kind')}/{name or '?'} (not a Workspace)", file=sys.stderr)
    if not workspaces:
        print(f"error: {args.file} holds no Workspace", file=sys.stderr)
        return 2
    configmaps = _tuning_configmaps([d for d in docs if d not in workspaces])
    for index, doc in enumerate(workspaces):
        old = old_docs[index] if index < len(old_docs) else None
        verdict = validate_workspace(doc, old, nodes=nodes, catalog=catalog, auto_provisioning=auto)
        label = _label(doc, index)
        summary: dict[str, Any] = {
            "workspace": label,
            "allowed": verdict.allowed,
            "warnings": verdict.warnings,
            "errors": [{"field": e.path, "message": e.message} for e in verdict.errors],
        }
        config_text, config_doc = training_config_text, training_config
        tuning = (doc.get("tuning") or {}) if isinstance(doc, dict) else {}
        if config_text is None and tuning.get("config"):
            namespace = ((doc.get("metadata") or {}).get("namespace")) or "default"
            config_text = configmaps.get((namespace, tuning["config"]))
            if config_text is not None:
                try:
                    config_doc = yaml.safe_load(config_text)
                except yaml.YAMLError as exc:
                    verdict.error("tuning.config", f"ConfigMap {tuning['config']}: {c.TUNING_CONFIG_KEY} is not "
                                                   f"valid YAML: {exc}")
        if verdict.allowed and config_doc is not None:
            method = tuning.get("method") or "lora"
            for err in validate_training_config(config_doc, method):
                verdict.error(err.path, err.message)
            summary["allowed"] = verdict.allowed
            summary["errors"] = [{"field": e.path, "message": e.message} for e in verdict.errors]
        plan: WorkloadPlan | None = None
        if verdict.allowed:
            try:
                ws = parse_workspace(doc)
                plan = plan_workspace(
                    ws,
                    catalog,
                    auto_provisioning=auto,
                    nodes=nodes or [],
                    training_config_text=config_text,
                    max_model_len=args.max_model_len,
                )
            except (PlanError, ValueError) as exc:
                verdict.error("", str(exc))
                summary["allowed"] = False
                summary["errors"].append({"field": "", "message": str(exc)})
        if not verdict.allowed:
            status = 1
        if plan is not None:
            summary.update(_plan_summary(plan))
            objects.extend(plan.nodeclaims)
            objects.extend(plan.objects)
        summaries.append(summary)
        if args.output == "text":
            _print_text(summary, plan, out)
        elif not verdict.allowed:
            for err in verdict.errors:
                print(f"error: {label}: {err}", file=sys.stderr)
    if args.output == "yaml":
        if objects:
            out.write(dump_yaml_all(objects))
    elif args.output == "json":
        out.write(json.dumps({"workspaces": summaries, "objects": objects}, indent=2) + "\n")
    return status


def _tuning_configmaps(docs: list[Any]) -> dict[tuple[str, str], str]:
    """``{(namespace, name): training_config.yaml text}`` of the ConfigMaps in the same file (a Workspace's
    ``tuning.config`` the operator will copy)."""
    found: dict[tuple[str, str], str] = {}
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
            continue
        meta = doc.get("metadata") or {}
        text = (doc.get("data") or {}).get(c.TUNING_CONFIG_KEY)
        if isinstance(meta, dict) and meta.get("name") and isinstance(text, str):
            found[(meta.get("namespace") or "default", meta["name"])] = text
    return found


def _label(doc: Any, index: int) -> str:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = (meta.get("namespace") if isinstance(meta, dict) else None) or "default"
    return f"{namespace}/{name}" if name else f"document {index + 1}"


def _plan_summary(plan: WorkloadPlan) -> dict[str, Any]:
    p, s, e = plan.preset, plan.sku, plan.estimate
    summary: dict[str, Any] = {
        "preset": p.name if p else None,
        "instanceType": s.name if s else None,
        "provisioning": plan.provisioning,
        "nodeCount": plan.node_count,
        "gpusPerNode": plan.gpus_per_node,
        "gpusTotal": plan.gpus_per_node * plan.node_count,
        "notes": plan.notes,
    }
    if e is not None:
        summary.update(
            {
                "minGPUs": e.min_gpus,
                "tensorParallelSize": e.tensor_parallel_size,
                "pipelineParallelSize": plan.node_count,
                "maxModelLen": e.max_model_len,
            }
        )
    return summary


def _print_text(summary: dict[str, Any], plan: WorkloadPlan | None, out: TextIO) -> None:
    def line(key: str, value: str) -> None:
        out.write(f"  {key + ':':<14}{value}\n")

    out.write(f"Workspace {summary['workspace']}\n")
    line("admission", "allowed" if summary["allowed"] else "DENIED")
    for err in summary["errors"]:
        line("error", f"{err['field']}: {err['message']}" if err["field"] else err["message"])
    for warning in summary["warnings"]:
        line("warning", warning)
    if plan is None:
        out.write("\n")
        return
    p, s, e = plan.preset, plan.sku, plan.estimate
    if p is not None:
        where = "CPU" if not p.requires_gpu else f"{p.weights_size_gib:g} GiB weights"
        line("preset", f"{p.name} ({p.family}, {where}, {p.token_limit}-token context, {p.runtime} runtime)")
    else:
        line("preset", "none (inference.template: your own pod template)")
    if s is not None:
        gpus = f"{s.gpu_count} x {s.gpu_model}, {s.gpu_memory_gib:g} GiB GPU memory" if s.gpu_count else "no GPU"
        line("instance", f"{s.name} ({s.cloud}, {gpus})")
    else:
        line("instance", "not in the catalog (bring-your-own or unknown type)")
    line("provisioning", f"{plan.provisioning} ({len(plan.nodeclaims)} NodeClaim(s))")
    line("nodes", str(plan.node_count))
    gpus_line = f"{plan.gpus_per_node} per node, {plan.gpus_per_node * plan.node_count} in total"
    if e is not None and p is not None and p.requires_gpu and not any(o["kind"] == "Job" for o in plan.objects):
        gpus_line += f" (the model needs at least {e.min_gpus})"
    line("GPUs", gpus_line)
    tuning = any(o["kind"] == "Job" for o in plan.objects)
    if tuning:
        line("parallelism", f"none (the {p.name if p else 'model'} trainer runs on one node)")
    elif e is not None and p is not None and p.requires_gpu:
        line(
            "parallelism",
            f"tensor {e.tensor_parallel_size} x pipeline {plan.node_count}; KV cache for {e.max_model_len} tokens "
            f"({e.reserve_gib_per_gpu:.2f} GiB reserve, {e.weights_gib_per_gpu:.2f} GiB for weights per GPU)",
        )
    elif p is not None:
        line("parallelism", "none (CPU preset, one process)")
    for note in plan.notes:
        line("note", note)
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in [*plan.nodeclaims, *plan.objects]]
    line("objects", ", ".join(names))
    out.write("\n")


def _list_presets(catalog: Catalog, out: TextIO) -> None:
    out.write(f"{'PRESET':<32}{'FAMILY':<13}{'WEIGHTS':>9}  {'CONTEXT':>8}  {'DEVICE':<7}TUNING\n")
    for p in catalog.presets.values():
        out.write(
            f"{p.name:<32}{p.family:<13}{p.weights_size_gib:>7g}Gi  {p.token_limit:>8}  {p.device:<7}"
            f"{'yes' if p.tuning else 'no'}\n"
        )
    if catalog.deprecated:
        out.write("deprecated (rejected): " + ", ".join(sorted(catalog.deprecated)) + "\n")


def _list_skus(catalog: Catalog, out: TextIO) -> None:
    out.write(f"{'INSTANCE TYPE':<28}{'CLOUD':<7}{'GPUS':>5}  {'GPU MODEL':<20}{'GPU MEMORY':>10}\n")
    for s in catalog.skus.values():
        out.write(f"{s.name:<28}{s.cloud:<7}{s.gpu_count:>5}  {s.gpu_model:<20}{s.gpu_memory_gib:>8g}Gi\n")
