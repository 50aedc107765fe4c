"""The webhook certificate: generated for the Service's DNS names, kept in a Secret, reused while valid, replaced
near expiry, and its CA injected into the webhook configuration."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kaito.operator.certs import (
    VALIDATING,
    bundle_is_usable,
    ensure_certificate,
    generate_bundle,
    inject_ca_bundle,
    service_dns_names,
)
from kaito.webhook.config import VALIDATING_NAME
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.gvk import GVK
from kreconcile.testing.apiserver import APIServer

ROOT = Path(__file__).resolve().parents[3]
SECRET = GVK("", "v1", "Secret")
NAMES = service_dns_names("kaito-webhook", "kaito-workspace")


def test_bundle_covers_the_service_names_and_chains_to_its_ca() -> None:
    bundle = generate_bundle(NAMES)
    cert = x509.load_pem_x509_certificate(bundle.cert)
    ca = x509.load_pem_x509_certificate(bundle.ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == NAMES and "kaito-webhook.kaito-workspace.svc" in sans
    cert.verify_directly_issued_by(ca)
    assert bundle_is_usable(bundle, NAMES)


def test_bundle_near_expiry_or_for_other_names_is_not_usable() -> None:
    old = generate_bundle(NAMES, now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=340))
    assert not bundle_is_usable(old, NAMES)  # 25 days left < 30
    assert not bundle_is_usable(generate_bundle(["other"]), NAMES)


def test_generate_bundle_needs_a_name() -> None:
    with pytest.raises(ValueError, match="at least one DNS name or IP address"):
        generate_bundle([])


@pytest.fixture
async def client(apiserver: APIServer) -> Client:
    c = Client(load_config(str(apiserver.kubeconfig_path)))
    await c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kaito-workspace"}})
    return c


async def test_secret_is_created_once_and_reused(client: Client) -> None:
    try:
        first = await ensure_certificate(client, namespace="kaito-workspace", secret_name="kaito-webhook-cert",
                                         service_name="kaito-webhook")
        secret = await client.get(SECRET, "kaito-webhook-cert", "kaito-workspace")
        assert secret["type"] == "kubernetes.io/tls"
        assert base64.b64decode(secret["data"]["tls.crt"]) == first.cert
        again = await ensure_certificate(client, namespace="kaito-workspace", secret_name="kaito-webhook-cert",
                                         service_name="kaito-webhook")
        assert again == first  # a second replica (or a restart) uses the same bundle
    finally:
        await client.close()


async def test_expiring_secret_is_replaced(client: Client) -> None:
    try:
        old = generate_bundle(NAMES, now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=360))
        await client.create({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "kaito-webhook-cert", "namespace": "kaito-workspace"},
            "data": {k: base64.b64encode(v).decode() for k, v in
                     (("ca.crt", old.ca), ("tls.crt", old.cert), ("tls.key", old.key))},
        })  # fmt: skip
        new = await ensure_certificate(client, namespace="kaito-workspace", secret_name="kaito-webhook-cert",
                                       service_name="kaito-webhook")
        assert new.cert != old.cert and bundle_is_usable(new, NAMES)
        secret = await client.get(SECRET, "kaito-webhook-cert", "kaito-workspace")
        assert base64.b64decode(secret["data"]["tls.crt"]) == new.cert
    finally:
        await client.close()


async def test_ca_is_injected_into_the_manifest_webhook_configuration(client: Client) -> None:
    try:
        await client.create(yaml.safe_load((ROOT / "manifests" / "webhook.yaml").read_text()))
        bundle = generate_bundle(NAMES)
        assert await inject_ca_bundle(client, bundle.ca) == [VALIDATING_NAME]
        vwc = await client.get(VALIDATING, VALIDATING_NAME)
        assert base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"]) == bundle.ca
        assert vwc["webhooks"][0]["clientConfig"]["service"]["name"] == "kaito-webhook"
        assert await inject_ca_bundle(client, bundle.ca) == []  # already current: no write
    finally:
        await client.close()
