"""A self-signed CA, a serving certificate for 127.0.0.1/localhost, and the kubeconfig that trusts them.

Real clusters serve HTTPS with a cluster CA and authenticate kubectl with a bearer token or client certificate;
the emulator does the same so kubectl and kubernetes-asyncio exercise their real TLS paths. Keys are EC P-256
(fast to generate); certificates are valid for 365 days.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServingCerts:
    """PEM paths: ``ca_path`` (the CA clients trust), ``cert_path``/``key_path`` (the server's pair)."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the HTTPS listener."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def generate_certs(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ServingCerts:
    """Write ``ca.crt``, ``apiserver.crt`` and ``apiserver.key`` into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kreconcile-apiserver-ca"))
        .issuer_name(_name("kreconcile-apiserver-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kube-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = ServingCerts(directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key")
    certs.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    certs.key_path.chmod(0o600)
    return certs


def new_token() -> str:
    """A random bearer token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def write_kubeconfig(path: Path, server: str, token: str, ca_path: Path | None, name: str = "kreconcile") -> Path:
    """Write a kubeconfig (cluster, user with ``token``, context ``name``, current) that kubectl and
    kubernetes-asyncio accept; ``ca_path`` None for plain HTTP."""
    cluster: dict[str, object] = {"server": server}
    if ca_path is not None:
        cluster["certificate-authority"] = str(ca_path)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
