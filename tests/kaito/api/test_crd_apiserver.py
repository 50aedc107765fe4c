"""The generated CRDs on the API-server emulator, driven by the real kubectl: they establish, the seed examples
apply, defaults are filled in, and `kubectl get workspace` shows the seed's columns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.kaito.api.builders import ROOT, SEED_EXAMPLES

KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")

pytestmark = pytest.mark.slow


async def run_kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def kubectl(kubeconfig: Path, *args: str) -> str:
    code, out, err = await run_kubectl(kubeconfig, *args)
    assert code == 0, f"kubectl {' '.join(args)}: {err}"
    return out


async def install(kubeconfig: Path) -> None:
    await kubectl(kubeconfig, "apply", "-f", str(ROOT / "manifests" / "crds"))
    await kubectl(kubeconfig, "wait", "--for=condition=Established", "crd/workspaces.kaito.sh", "--timeout=30s")


async def test_seed_examples_apply_and_get_shows_the_seed_columns(kubeconfig: Path) -> None:
    await install(kubeconfig)
    for path in SEED_EXAMPLES[:2]:
        await kubectl(kubeconfig, "apply", "-f", str(path))

    table = await kubectl(kubeconfig, "get", "workspace")
    wide = await kubectl(kubeconfig, "get", "wks", "-o", "wide")

    header, *rows = table.splitlines()
    assert header.split() == ["NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE"]
    assert [r.split()[:2] for r in rows] == [
        ["workspace-phi-3-mini", "Standard_NC6s_v3"],
        ["workspace-phi-3-mini-adapter", "Standard_NC6s_v3"],
    ]
    assert wide.splitlines()[0].split() == [
        "NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "JOBSTARTED", "AGE",
    ]  # fmt: skip


async def test_condition_status_fills_the_ready_columns(kubeconfig: Path) -> None:
    await install(kubeconfig)
    await kubectl(kubeconfig, "apply", "-f", str(SEED_EXAMPLES[0]))
    conditions = [
        {"type": t, "status": "True", "reason": t, "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        for t in ("ResourceReady", "InferenceReady", "WorkspaceSucceeded")
    ]
    await kubectl(
        kubeconfig, "patch", "workspace", "workspace-phi-3-mini", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"conditions": conditions}}),
    )  # fmt: skip

    row = (await kubectl(kubeconfig, "get", "wk", "workspace-phi-3-mini", "--no-headers")).split()

    assert row[:5] == ["workspace-phi-3-mini", "Standard_NC6s_v3", "True", "True", "True"]


async def test_stored_object_gets_schema_defaults_and_the_storage_version(kubeconfig: Path) -> None:
    await install(kubeconfig)
    await kubectl(kubeconfig, "apply", "-f", str(SEED_EXAMPLES[0]))

    obj = json.loads(await kubectl(kubeconfig, "get", "workspace", "workspace-phi-3-mini", "-o", "json"))

    assert obj["resource"]["count"] == 1
    assert obj["inference"]["preset"]["accessMode"] == "public"
    assert "spec" not in obj


async def test_kubectl_explain_documents_the_fields(kubeconfig: Path) -> None:
    await install(kubeconfig)

    resource = await kubectl(kubeconfig, "explain", "workspace.resource")
    alpha = await kubectl(kubeconfig, "explain", "wk.resource.instanceType", "--api-version=kaito.sh/v1alpha1")

    assert "The nodes the workspace runs on." in resource
    assert "labelSelector\t<Object> -required-" in resource
    assert "Number of nodes to run the workload on (default 1)." in resource
    assert "VERSION:    v1alpha1" in alpha and "Standard_NC24ads_A100_v4" in alpha


async def test_the_api_server_enforces_the_schema(kubeconfig: Path) -> None:
    await install(kubeconfig)
    example = (ROOT / "examples" / "inference" / "smollm2-local.yaml").read_text()

    zero = await run_kubectl(
        kubeconfig, "apply", "-f", "-", stdin=example.replace("  labelSelector:", "  count: 0\n  labelSelector:")
    )
    typo = await run_kubectl(kubeconfig, "apply", "-f", "-", stdin=example.replace("instanceType", "instancetype"))

    assert zero[0] != 0 and "resource.count" in zero[2] and "greater than or equal to 1" in zero[2]
    assert typo[0] != 0 and 'unknown field "resource.instancetype"' in typo[2]
