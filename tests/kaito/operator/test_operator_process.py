"""The real ``python -m kaito.operator`` process against the API server emulator: it makes the webhook certificate
and injects its CA, serves admission over TLS for the Service's DNS name, becomes ready, reconciles a Workspace into
a NodeClaim, a Node and a StatefulSet, exposes controller-runtime metrics, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kaito.api.crd import generate_crds
from kaito.operator.certs import VALIDATING
from kaito.webhook.config import VALIDATING_NAME
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK
from kreconcile.testing.apiserver import APIServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SECRET = GVK("", "v1", "Secret")
NODE = GVK("", "v1", "Node")
NODECLAIM = GVK("karpenter.sh", "v1", "NodeClaim")
STATEFULSET = GVK("apps", "v1", "StatefulSet")
CRD = GVK("apiextensions.k8s.io", "v1", "CustomResourceDefinition")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await predicate()
        except (NotFound, aiohttp.ClientError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


def review(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "kind": {"group": "kaito.sh", "version": "v1beta1", "kind": "Workspace"},
                    "resource": {"group": "kaito.sh", "version": "v1beta1", "resource": "workspaces"},
                    "operation": "CREATE", "namespace": "default", "name": obj["metadata"]["name"], "object": obj},
    }  # fmt: skip


WORKSPACE = {
    "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "ws", "namespace": "default"},
    "resource": {"instanceType": "local-cpu", "labelSelector": {"matchLabels": {"apps": "ws"}}},
    "inference": {"preset": {"name": "smollm2-135m-instruct"}},
}  # fmt: skip


async def test_operator_process_end_to_end_on_the_emulator(apiserver: APIServer, tmp_path: Path) -> None:
    client = Client(load_config(str(apiserver.kubeconfig_path)))
    for crd in generate_crds().values():
        await client.apply(copy.deepcopy(crd), field_manager="test")
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kaito-workspace"}})
    await client.create(yaml.safe_load((ROOT / "manifests" / "webhook.yaml").read_text()))
    ports = {name: free_port() for name in ("metrics", "probes", "webhook")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaito.operator", "--kubeconfig", str(apiserver.kubeconfig_path),
        "--namespace=kaito-workspace", "--provider=local", "--log-format=json", "--log-level=info",
        f"--metrics-bind-address=127.0.0.1:{ports['metrics']}",
        f"--health-probe-bind-address=127.0.0.1:{ports['probes']}",
        f"--webhook-bind-address=127.0.0.1:{ports['webhook']}", f"--webhook-cert-dir={tmp_path / 'certs'}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                async with http.get(f"http://127.0.0.1:{ports['probes']}/readyz") as resp:
                    return resp.status == 200

            await until(ready, 120, "/readyz to answer 200")

            # the certificate: a Secret, files in the cert dir, CA injected into the manifest's configuration
            secret = await client.get(SECRET, "kaito-webhook-cert", "kaito-workspace")
            ca = base64.b64decode(secret["data"]["ca.crt"])
            vwc = await client.get(VALIDATING, VALIDATING_NAME)
            assert base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"]) == ca
            assert (tmp_path / "certs" / "tls.crt").read_bytes() == base64.b64decode(secret["data"]["tls.crt"])

            # admission over TLS, verified against that CA for the Service's DNS name
            ctx = ssl.create_default_context(cadata=ca.decode())
            bad = copy.deepcopy(WORKSPACE)
            bad["inference"]["preset"]["name"] = "no-such-model"
            connector = aiohttp.TCPConnector(ssl=ctx)
            async with aiohttp.ClientSession(connector=connector) as tls:
                url = f"https://127.0.0.1:{ports['webhook']}/validate"
                async with tls.post(url, json=review(bad), server_hostname="kaito-webhook.kaito-workspace.svc") as r:
                    answer = await r.json()
            assert answer["response"]["allowed"] is False
            assert "no-such-model" in json.dumps(answer["response"])

            # reconcile: the emulator cannot reach the webhook Service, so drop the configuration first
            await client.delete(vwc)
            await client.create(copy.deepcopy(WORKSPACE))
            await until(lambda: _items(client, NODECLAIM), 60, "a NodeClaim")
            await until(lambda: _items(client, NODE), 60, "the local provider's Node")
            await until(lambda: client.get(STATEFULSET, "ws", "default"), 60, "the inference StatefulSet")

            async with http.get(f"http://127.0.0.1:{ports['metrics']}/metrics") as resp:
                text = await resp.text()
            assert 'controller_runtime_reconcile_total{controller="workspace",result="success"}' in text
            assert 'controller_runtime_reconcile_total{controller="nodeclaim"' in text
            assert 'controller_runtime_webhook_requests_total{code="200",webhook="/validate"} 1.0' in text
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
        err = (await proc.stderr.read()).decode() if proc.stderr else ""
        await client.close()
    assert code == 0, err[-3000:]
    assert '"event": "stopped"' in err


async def _items(client: Client, gvk: GVK) -> list[Any]:
    return list((await client.list(gvk))["items"])
