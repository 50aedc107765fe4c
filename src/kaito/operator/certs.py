"""How the webhook's certificate is made: a self-signed CA and a serving certificate kept in a Secret.

At start the operator (every replica) reads Secret ``<--webhook-secret-name>`` in its namespace. When it is missing,
unreadable, or the serving certificate expires within :data:`ROTATE_BEFORE_DAYS` days, a new CA and certificate
are generated and written (create, or update guarded by resourceVersion: when two replicas race, the loser re-reads
the winner's). The files go to ``--webhook-cert-dir`` and the CA is written into ``clientConfig.caBundle`` of
kaito's Validating/MutatingWebhookConfiguration. Upstream Kaito does the same through knative's certificate
controller; with cert-manager instead, run with ``--no-webhook-manage-certs``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaito.webhook.config import MUTATING_NAME, VALIDATING_NAME
from kreconcile.errors import AlreadyExists, Conflict, NotFound
from kreconcile.gvk import GVK

log = structlog.get_logger("kaito.operator.certs")

SECRET = GVK("", "v1", "Secret")
VALIDATING = GVK("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration")
MUTATING = GVK("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration")

CA_VALID_DAYS = 3650
"""The CA lives ten years."""
SERVING_VALID_DAYS = 365
"""The serving certificate lives one year."""
ROTATE_BEFORE_DAYS = 30
"""A serving certificate expiring within 30 days is replaced at the next start."""


@dataclass(frozen=True)
class CertBundle:
    """PEM bytes: ``ca`` (``ca.crt``), ``cert`` (``tls.crt``), ``key`` (``tls.key``)."""

    ca: bytes
    cert: bytes
    key: bytes

    def write(self, cert_dir: Path) -> None:
        """Write ``tls.crt``, ``tls.key`` (mode 0600) and ``ca.crt`` into ``cert_dir`` (created if needed)."""
        cert_dir.mkdir(parents=True, exist_ok=True)
        (cert_dir / "ca.crt").write_bytes(self.ca)
        (cert_dir / "tls.crt").write_bytes(self.cert)
        key = cert_dir / "tls.key"
        key.write_bytes(self.key)
        key.chmod(0o600)


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for Service ``namespace/service``: ``svc``, ``svc.ns``, ``svc.ns.svc``,
    ``svc.ns.svc.cluster.local``."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate_bundle(
    dns_names: Sequence[str], ip_addresses: Sequence[str] = (), *, now: datetime.datetime | None = None
) -> CertBundle:
    """A new ECDSA P-256 CA (10 years) and a serving certificate (1 year) it signs for ``dns_names`` and
    ``ip_addresses``.

    Raises:
        ValueError: neither names nor addresses, or an address that is not an IP.
    """
    if not dns_names and not ip_addresses:
        raise ValueError("generate_bundle: give at least one DNS name or IP address for the serving certificate")
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kaito-webhook-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    common = dns_names[0] if dns_names else ip_addresses[0]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVING_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return CertBundle(ca=ca.public_bytes(pem), cert=cert.public_bytes(pem), key=_pem_key(key))


def bundle_is_usable(bundle: CertBundle, dns_names: Sequence[str], *, now: datetime.datetime | None = None) -> bool:
    """True when ``bundle``'s serving certificate parses, covers ``dns_names`` and is valid for more than
    :data:`ROTATE_BEFORE_DAYS` days."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        cert = x509.load_pem_x509_certificate(bundle.cert)
        x509.load_pem_x509_certificate(bundle.ca)
        serialization.load_pem_private_key(bundle.key, password=None)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except (ValueError, x509.ExtensionNotFound):
        return False
    return set(dns_names) <= set(names) and cert.not_valid_after_utc - now > datetime.timedelta(
        days=ROTATE_BEFORE_DAYS
    )


def _from_secret(secret: dict[str, Any]) -> CertBundle | None:
    data = secret.get("data") or {}
    try:
        return CertBundle(*(base64.b64decode(data[k]) for k in ("ca.crt", "tls.crt", "tls.key")))
    except (KeyError, ValueError, TypeError):
        return None


def _secret(name: str, namespace: str, bundle: CertBundle) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "kaito"}},
        "type": "kubernetes.io/tls",
        "data": {
            "ca.crt": base64.b64encode(bundle.ca).decode(),
            "tls.crt": base64.b64encode(bundle.cert).decode(),
            "tls.key": base64.b64encode(bundle.key).decode(),
        },
    }


async def ensure_certificate(client: Any, *, namespace: str, secret_name: str, service_name: str) -> CertBundle:
    """The usable bundle in Secret ``namespace/secret_name``, generating and storing a new one if needed.

    Args:
        client: a kreconcile client (``get``/``create``/``update`` of Secrets).

    Raises:
        kreconcile.errors.APIError: the API server refused (e.g. RBAC); the message says which verb.
    """
    names = service_dns_names(service_name, namespace)
    for _attempt in range(5):
        try:
            secret = await client.get(SECRET, secret_name, namespace)
        except NotFound:
            secret = None
        bundle = _from_secret(secret) if secret is not None else None
        if bundle is not None and bundle_is_usable(bundle, names):
            return bundle
        fresh = generate_bundle(names)
        obj = _secret(secret_name, namespace, fresh)
        try:
            if secret is None:
                await client.create(obj)
            else:
                obj["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                await client.update(obj)
        except (AlreadyExists, Conflict):
            continue  # another replica wrote one first: use it
        log.info("webhook certificate generated", namespace=namespace, secret=secret_name)
        return fresh
    raise RuntimeError(f"could not settle Secret {namespace}/{secret_name} after 5 attempts (constant conflicts)")


async def inject_ca_bundle(client: Any, ca: bytes, names: Sequence[tuple[GVK, str]] | None = None) -> list[str]:
    """Write ``ca`` into ``clientConfig.caBundle`` of every webhook of the named configurations (default:
    kaito's validating and mutating ones); missing configurations are skipped. Returns the names patched."""
    targets = names if names is not None else [(VALIDATING, VALIDATING_NAME), (MUTATING, MUTATING_NAME)]
    encoded = base64.b64encode(ca).decode()
    patched: list[str] = []
    for gvk, name in targets:
        try:
            obj = await client.get(gvk, name)
        except NotFound:
            continue
        hooks = obj.get("webhooks") or []
        if all((h.get("clientConfig") or {}).get("caBundle") == encoded for h in hooks):
            continue
        for hook in hooks:
            hook.setdefault("clientConfig", {})["caBundle"] = encoded
        await client.patch(obj, {"webhooks": hooks}, "merge")
        patched.append(name)
    return patched
