"""Builders for Workspace dicts used across kaito tests: a valid base object plus small edits."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
SEED_EXAMPLES = [
    EXAMPLES / "inference" / "kaito_workspace_phi_3.yaml",
    EXAMPLES / "inference" / "kaito_workspace_phi_3_with_adapters.yaml",
    EXAMPLES / "tuning" / "kaito_workspace_phi_3.yaml",
    EXAMPLES / "tuning" / "kaito_workspace_phi_3_with_adapters.yaml",
]
ALL_EXAMPLES = [*SEED_EXAMPLES, EXAMPLES / "inference" / "smollm2-local.yaml"]


def load(path: Path) -> dict[str, Any]:
    """The single YAML document in ``path``."""
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def inference_ws(
    name: str = "ws",
    preset: str = "phi-3-mini-4k-instruct",
    instance_type: str | None = "Standard_NC24ads_A100_v4",
    version: str = "v1beta1",
    **resource: Any,
) -> dict[str, Any]:
    """A valid inference Workspace."""
    res: dict[str, Any] = {"labelSelector": {"matchLabels": {"apps": "test"}}, **resource}
    if instance_type is not None:
        res["instanceType"] = instance_type
    return {
        "apiVersion": f"kaito.sh/{version}",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": "default"},
        "resource": res,
        "inference": {"preset": {"name": preset}},
    }


def tuning_ws(name: str = "tune", preset: str = "phi-3-mini-4k-instruct", method: str = "qlora") -> dict[str, Any]:
    """A valid tuning Workspace (URL input, image output)."""
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": "default"},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"app": "tune"}}},
        "tuning": {
            "preset": {"name": preset},
            "method": method,
            "input": {"urls": ["https://example.com/data.parquet"]},
            "output": {"image": "registry.example.com/adapters/a:0.1", "imagePushSecret": "push-secret"},
        },
    }


def edit(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with dotted ``path`` (``a.b[0].c``) set to ``value`` (``DELETE`` removes it)."""
    out = copy.deepcopy(obj)
    parts: list[str | int] = []
    for piece in path.split("."):
        while "[" in piece:
            head, _, rest = piece.partition("[")
            if head:
                parts.append(head)
            index, _, piece = rest.partition("]")
            parts.append(int(index))
        if piece:
            parts.append(piece)
    target: Any = out
    for part in parts[:-1]:
        if isinstance(part, int):
            target = target[part]
        else:
            target = target.setdefault(part, {})
    last = parts[-1]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return out


DELETE = object()
