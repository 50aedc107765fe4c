"""The HTTPS AdmissionReview server: real TLS on 127.0.0.1, validate + mutate round trips, cert rotation."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaito.webhook.server import WebhookServer
from tests.kaito.api.builders import edit, inference_ws


def write_cert(cert_dir: Path, common_name: str) -> bytes:
    """A self-signed cert for 127.0.0.1 in ``cert_dir/tls.crt`` + ``tls.key``; returns its DER bytes."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (cert_dir / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (cert_dir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[WebhookServer]:
    write_cert(tmp_path, "kaito-webhook-1")
    async with WebhookServer(cert_dir=tmp_path, port=0, reload_interval=3600) as srv:
        yield srv


def client_ssl(cert_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_dir / "tls.crt"))


def review(obj: Any, operation: str = "CREATE", old: Any = None, uid: str = "uid-1") -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "kaito.sh", "version": "v1beta1", "kind": "Workspace"},
        "operation": operation,
        "object": obj,
    }
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


async def post(srv: WebhookServer, path: str, body: Any, ctx: ssl.SSLContext) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with session.post(srv.url + path, data=data, ssl=ctx, headers={"Content-Type": "application/json"}) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text


async def test_valid_workspace_is_allowed_over_https(server: WebhookServer, tmp_path: Path) -> None:
    status, body = await post(server, "/validate", review(inference_ws()), client_ssl(tmp_path))

    assert status == 200
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"] == {"uid": "uid-1", "allowed": True}


async def test_invalid_workspace_is_denied_with_field_causes(server: WebhookServer, tmp_path: Path) -> None:
    obj = edit(inference_ws(), "inference.adapters", [{"source": {"name": "a", "image": "r/a:1"}, "strength": "2"}])

    status, body = await post(server, "/validate", review(obj, uid="u-2"), client_ssl(tmp_path))

    assert status == 200
    response = body["response"]
    assert response["uid"] == "u-2" and response["allowed"] is False
    assert response["status"]["code"] == 422 and response["status"]["reason"] == "Invalid"
    assert response["status"]["details"]["causes"] == [
        {
            "type": "FieldValueInvalid",
            "field": "inference.adapters[0].strength",
            "message": '\'2\' is outside [0, 1]; use a decimal string between "0.0" and "1.0"',
        }
    ]
    assert response["status"]["message"].startswith("inference.adapters[0].strength: '2' is outside [0, 1]")


async def test_update_checks_immutability_and_returns_warnings(server: WebhookServer, tmp_path: Path) -> None:
    old = inference_ws()
    new = edit(edit(old, "resource.count", 3), "resource.preferredNodes", ["n1"])

    _, body = await post(server, "/validate", review(new, "UPDATE", old), client_ssl(tmp_path))

    assert body["response"]["allowed"] is False
    assert [c["field"] for c in body["response"]["status"]["details"]["causes"]] == ["resource.count"]
    assert body["response"]["warnings"][0].startswith("resource.preferredNodes is deprecated")


async def test_delete_is_always_allowed(server: WebhookServer, tmp_path: Path) -> None:
    _, body = await post(server, "/validate", review(None, "DELETE"), client_ssl(tmp_path))

    assert body["response"]["allowed"] is True


async def test_mutate_returns_a_json_patch_with_the_defaults(server: WebhookServer, tmp_path: Path) -> None:
    obj = edit(
        inference_ws(instance_type=None, version="v1alpha1"),
        "inference.adapters",
        [{"source": {"name": "a", "image": "r/a:1"}}],
    )

    _, body = await post(server, "/mutate", review(obj), client_ssl(tmp_path))

    response = body["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(response["patch"])))
    assert patched["resource"]["count"] == 1
    assert patched["resource"]["instanceType"] == "Standard_NC24ads_A100_v4"
    assert patched["inference"]["preset"]["accessMode"] == "public"
    assert patched["inference"]["adapters"][0]["strength"] == "1.0"


async def test_malformed_bodies_get_400_not_500(server: WebhookServer, tmp_path: Path) -> None:
    ctx = client_ssl(tmp_path)

    bad_json = await post(server, "/validate", b"{not json", ctx)
    no_uid = await post(server, "/validate", {"request": {"object": {}}}, ctx)
    not_object = await post(server, "/mutate", [1, 2], ctx)

    assert [bad_json[0], no_uid[0], not_object[0]] == [400, 400, 400]
    assert "AdmissionReview" in bad_json[1]["error"]


async def test_garbage_objects_are_denied_cleanly(server: WebhookServer, tmp_path: Path) -> None:
    _, body = await post(server, "/validate", review([1, "x"]), client_ssl(tmp_path))

    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["message"] == "the object must be a mapping (a Workspace), got list"


async def _peer_cert(srv: WebhookServer, ctx: ssl.SSLContext) -> bytes:
    _reader, writer = await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert der is not None
        return bytes(der)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_rotated_certificate_is_served_after_reload(tmp_path: Path) -> None:
    first = write_cert(tmp_path, "kaito-webhook-1")
    async with WebhookServer(cert_dir=tmp_path, port=0, reload_interval=3600) as srv:
        no_check = ssl.create_default_context()
        no_check.check_hostname = False
        no_check.verify_mode = ssl.CERT_NONE
        assert await _peer_cert(srv, no_check) == first
        assert srv.certs is not None and srv.certs.check() is False  # unchanged files: nothing to do

        second = write_cert(tmp_path, "kaito-webhook-2")
        assert srv.certs.check() is True

        assert await _peer_cert(srv, no_check) == second
        status, body = await post(srv, "/validate", review(inference_ws()), client_ssl(tmp_path))
        assert status == 200 and body["response"]["allowed"] is True


async def test_a_half_written_certificate_keeps_the_old_one(tmp_path: Path) -> None:
    first = write_cert(tmp_path, "kaito-webhook-1")
    async with WebhookServer(cert_dir=tmp_path, port=0, reload_interval=3600) as srv:
        (tmp_path / "tls.crt").write_text("-----BEGIN CERTIFICATE-----\ntruncated")
        assert srv.certs is not None and srv.certs.check() is False

        no_check = ssl.create_default_context()
        no_check.check_hostname = False
        no_check.verify_mode = ssl.CERT_NONE
        assert await _peer_cert(srv, no_check) == first


async def test_byo_nodes_come_from_the_injected_lister(tmp_path: Path) -> None:
    write_cert(tmp_path, "kaito-webhook-1")
    nodes = [
        {
            "metadata": {
                "name": "n1",
                "labels": {
                    "apps": "test",
                    "nvidia.com/gpu.product": "Tesla-V100",
                    "nvidia.com/gpu.count": "1",
                    "nvidia.com/gpu.memory": "16384",
                },
            }
        }
    ]
    obj = inference_ws(preset="phi-3-medium-4k-instruct", instance_type=None)
    async with WebhookServer(cert_dir=tmp_path, port=0, auto_provisioning=False, nodes=lambda: nodes) as srv:
        _, body = await post(srv, "/validate", review(obj), client_ssl(tmp_path))

    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["details"]["causes"][0]["field"] == "resource.count"


@pytest.mark.slow
async def test_python_m_kaito_webhook_serves_until_terminated(tmp_path: Path) -> None:
    import sys

    write_cert(tmp_path, "kaito-webhook-1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaito.webhook", "--cert-dir", str(tmp_path), "--port", "0",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("kaito webhook serving on "):  # structlog lines come first
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
            assert line, "the webhook exited before serving"
        url = line.removeprefix("kaito webhook serving on ").strip()
        assert url.startswith("https://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/validate", json=review(inference_ws()), ssl=client_ssl(tmp_path)) as r:
                body = await r.json()
        assert body["response"]["allowed"] is True
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0


def test_webhook_configurations_route_both_versions_to_the_server() -> None:
    from kaito.webhook.config import webhook_configurations

    mutating, validating = webhook_configurations(b"PEM", url="https://127.0.0.1:9443/")
    in_cluster = webhook_configurations(b"PEM", service=("kaito-system", "kaito-webhook", 443))[1]

    hook = validating["webhooks"][0]
    assert (mutating["kind"], validating["kind"]) == ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    assert hook["clientConfig"] == {"caBundle": "UEVN", "url": "https://127.0.0.1:9443/validate"}
    assert mutating["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:9443/mutate"
    assert hook["rules"] == [
        {
            "apiGroups": ["kaito.sh"],
            "apiVersions": ["v1alpha1", "v1beta1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["workspaces"],
            "scope": "Namespaced",
        }
    ]
    assert (hook["failurePolicy"], hook["sideEffects"], hook["admissionReviewVersions"]) == ("Fail", "None", ["v1"])
    assert in_cluster["webhooks"][0]["clientConfig"]["service"] == {
        "namespace": "kaito-system",
        "name": "kaito-webhook",
        "path": "/validate",
        "port": 443,
    }
    with pytest.raises(ValueError, match="give url="):
        webhook_configurations(b"PEM")


async def test_requests_are_counted_with_controller_runtime_metric_names(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    write_cert(tmp_path, "kaito-webhook-1")
    registry = CollectorRegistry()
    async with WebhookServer(cert_dir=tmp_path, port=0, registry=registry) as srv:
        ctx = client_ssl(tmp_path)
        await post(srv, "/validate", review(inference_ws()), ctx)
        await post(srv, "/validate", b"junk", ctx)
        await post(srv, "/mutate", review(inference_ws()), ctx)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("controller_runtime_webhook_requests_total", code="200", webhook="/validate") == 1
    assert value("controller_runtime_webhook_requests_total", code="400", webhook="/validate") == 1
    assert value("controller_runtime_webhook_requests_total", code="200", webhook="/mutate") == 1
    assert value("controller_runtime_webhook_latency_seconds_count", webhook="/validate") == 2
    assert value("controller_runtime_webhook_requests_in_flight", webhook="/validate") == 0
