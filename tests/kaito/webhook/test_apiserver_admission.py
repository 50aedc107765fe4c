"""The webhook registered in the API-server emulator: kubectl apply of a bad Workspace is refused with the rule's
field path and fix, the seed examples are admitted (with warnings shown by kubectl)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaito.webhook.config import webhook_configurations
from kaito.webhook.server import WebhookServer
from tests.kaito.api.builders import ROOT, SEED_EXAMPLES, edit, inference_ws
from tests.kaito.webhook.test_server import write_cert

KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")

pytestmark = pytest.mark.slow  # kubectl subprocesses


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def admission(kubeconfig: Path, tmp_path: Path) -> AsyncIterator[Path]:
    """CRDs installed and the kaito webhook registered in the emulator; yields the kubeconfig."""
    write_cert(tmp_path, "kaito-webhook")
    async with WebhookServer(cert_dir=tmp_path, port=0, reload_interval=3600) as server:
        code, _, err = await kubectl(kubeconfig, "apply", "-f", str(ROOT / "manifests" / "crds"))
        assert code == 0, err
        code, _, err = await kubectl(
            kubeconfig, "wait", "--for=condition=Established", "crd/workspaces.kaito.sh", "--timeout=30s"
        )
        assert code == 0, err
        validating = webhook_configurations((tmp_path / "tls.crt").read_bytes(), url=server.url)[1]
        code, _, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(validating))
        assert code == 0, err
        yield kubeconfig


async def test_kubectl_apply_of_an_invalid_workspace_shows_the_field_and_fix(admission: Path) -> None:
    bad = edit(inference_ws(preset="phi-3-medium-128k-instruct", instance_type="Standard_NC6s_v3"), "metadata",
               {"name": "too-small", "namespace": "default"})  # fmt: skip

    code, _, err = await kubectl(admission, "apply", "-f", "-", stdin=json.dumps(bad))

    assert code != 0
    # kubectl renders the webhook's 422 Invalid status from its causes: field path, then the fix
    assert 'The Workspace "too-small" is invalid: ' in err
    assert "resource.instanceType: Insufficient total GPU memory: 1 x 'Standard_NC6s_v3' has 16 GiB" in err
    code, _, _ = await kubectl(admission, "get", "workspace", "too-small")
    assert code != 0  # nothing was stored


async def test_seed_examples_are_admitted_through_the_webhook(admission: Path) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tuning"}}
    code, _, err = await kubectl(admission, "apply", "-f", "-", stdin=json.dumps(namespace))
    assert code == 0, err

    for path in SEED_EXAMPLES[:2]:
        code, out, err = await kubectl(admission, "apply", "-f", str(path))
        assert code == 0, err
        assert "created" in out
    # the seed's tuning example reuses the inference example's name: apply it in its own namespace
    code, out, err = await kubectl(admission, "apply", "-n", "tuning", "-f", str(SEED_EXAMPLES[2]))
    assert code == 0, err
    assert "workspace.kaito.sh/workspace-phi-3-mini created" in out


async def test_seed_tuning_example_over_the_inference_one_is_refused_not_merged(admission: Path) -> None:
    code, _, err = await kubectl(admission, "apply", "-f", str(SEED_EXAMPLES[0]))
    assert code == 0, err

    code, _, err = await kubectl(admission, "apply", "-f", str(SEED_EXAMPLES[2]))

    assert code != 0
    assert "a workspace cannot switch between inference and tuning; create a new Workspace" in err


async def test_immutable_field_update_is_refused(admission: Path) -> None:
    code, _, err = await kubectl(admission, "apply", "-f", str(SEED_EXAMPLES[0]))
    assert code == 0, err

    code, _, err = await kubectl(
        admission, "patch", "workspace", "workspace-phi-3-mini", "--type=merge", "-p", '{"resource":{"count":2}}'
    )

    assert code != 0
    assert "resource.count: is immutable (was 1, now 2)" in err
