"""load_config: explicit path → $KUBECONFIG → in-cluster → ~/.kube/config; credentials → a working connection."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

import aiohttp
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kreconcile import connection
from kreconcile.client import Client, TokenBucket
from kreconcile.clock import FakeClock
from kreconcile.config import DEFAULT_BURST, DEFAULT_QPS, ConfigError, RestConfig, load_config
from kreconcile.errors import Unauthorized
from kreconcile.gvk import GVK
from kreconcile.testing.apiserver import APIServer


def kubeconfig(path: Path, server: str, context: str = "dev", token: str = "t0k") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "c2", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": token}}],
    }))
    return path


def test_explicit_path_wins_over_env_and_defaults_are_controller_runtime_rates(tmp_path: Path) -> None:
    a = kubeconfig(tmp_path / "a", "http://127.0.0.1:1111")
    b = kubeconfig(tmp_path / "b", "http://127.0.0.1:2222")
    cfg = load_config(str(a), environ={"KUBECONFIG": str(b)})
    assert cfg.host == "http://127.0.0.1:1111" and cfg.kubeconfig == str(a)
    assert (cfg.qps, cfg.burst) == (DEFAULT_QPS, DEFAULT_BURST) == (20.0, 30)
    assert load_config(environ={"KUBECONFIG": str(b)}).host == "http://127.0.0.1:2222"


def test_in_cluster_used_when_no_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc")
    cfg = load_config(environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
                      service_account_dir=str(tmp_path))
    assert cfg.in_cluster and cfg.host == "https://10.0.0.1:443"


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "missing"), environ={})
    k = kubeconfig(tmp_path / "k", "http://x")
    with pytest.raises(ConfigError, match="context 'nope' not found"):
        load_config(str(k), "nope", environ={})
    with pytest.raises(ConfigError, match="has no server URL"):
        load_config(str(k), "other", environ={})


async def test_new_api_client_carries_host_and_token(tmp_path: Path) -> None:
    cfg = load_config(str(kubeconfig(tmp_path / "k", "http://127.0.0.1:3333")), environ={})
    api = await cfg.new_api_client()
    try:
        assert api.configuration.host == "http://127.0.0.1:3333"
        assert "t0k" in str(await api.configuration.get_api_key_with_prefix("BearerToken"))
    finally:
        await api.close()
    explicit = await RestConfig(host="http://127.0.0.1:1", token="secret").new_api_client()
    try:
        assert await explicit.configuration.get_api_key_with_prefix("BearerToken") == "Bearer secret"
    finally:
        await explicit.close()


async def test_token_bucket_allows_burst_then_paces_at_qps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=10, burst=3, clock=clock)
    waits = []
    for _ in range(3):
        waits.append(await bucket.acquire())
    assert waits == [0.0, 0.0, 0.0]
    t1 = asyncio.create_task(bucket.acquire())
    t2 = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    assert clock.next_deadline() == pytest.approx(0.1)  # one token per 100 ms, in arrival order
    clock.advance(0.1)
    assert await t1 == pytest.approx(0.1)
    assert not t2.done() and clock.next_deadline() == pytest.approx(0.2)
    clock.advance(0.1)
    assert await t2 == pytest.approx(0.2)
    assert await TokenBucket(qps=0, burst=0, clock=clock).acquire() == 0.0  # disabled
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(qps=5, burst=0)


async def test_exec_plugin_token_is_refreshed_when_it_expires(tmp_path: Path) -> None:
    async with APIServer(tls=False) as server:
        counter = tmp_path / "calls"
        plugin = tmp_path / "plugin.sh"
        # an ExecCredential whose token is already expired: every request must run the plugin again
        plugin.write_text(
            "#!/bin/sh\n"
            f"echo x >> {counter}\n"
            "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\","
            f"\"status\":{{\"token\":\"{server.token}\",\"expirationTimestamp\":\"2000-01-01T00:00:00Z\"}}}}'\n"
        )
        plugin.chmod(0o755)
        kc = tmp_path / "kubeconfig"
        kc.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server.url}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}}}],
        }))
        async with Client(load_config(str(kc), environ={}).with_rate(0)) as client:
            for _ in range(3):
                assert (await client.get(GVK("", "v1", "Namespace"), "default"))["metadata"]["name"] == "default"
        assert len(counter.read_text().split()) >= 3  # once at load, then again for expired tokens


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kreconcile-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _kubeconfig(path: Path, cluster: dict[str, object], user: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": cluster}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": user}],
    }))
    return path


async def _namespace_default(cfg: RestConfig) -> str:
    async with Client(cfg.with_rate(0)) as client:
        return str((await client.get(GVK("", "v1", "Namespace"), "default"))["metadata"]["name"])


async def test_kubeconfig_variants_ca_data_token_file_insecure_and_client_cert_data(tmp_path: Path) -> None:
    async with APIServer() as server:
        assert server.ca_path is not None
        ca_b64 = base64.b64encode(server.ca_path.read_bytes()).decode()
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "tok").write_text(server.token + "\n")
        with_data = _kubeconfig(tmp_path / "a", {"server": server.url, "certificate-authority-data": ca_b64},
                                {"tokenFile": "sub/tok"})  # relative to the kubeconfig's directory
        assert await _namespace_default(load_config(str(with_data), environ={})) == "default"
        insecure = _kubeconfig(tmp_path / "b", {"server": server.url, "insecure-skip-tls-verify": True},
                               {"token": server.token})
        assert await _namespace_default(load_config(str(insecure), environ={})) == "default"
        untrusted = _kubeconfig(tmp_path / "c", {"server": server.url}, {"token": server.token})
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _namespace_default(load_config(str(untrusted), environ={}))
        cert, key = _self_signed()
        with_cert = _kubeconfig(tmp_path / "d", {"server": server.url, "certificate-authority-data": ca_b64}, {
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode(), "token": server.token})
        assert await _namespace_default(load_config(str(with_cert), environ={})) == "default"
        broken = _kubeconfig(tmp_path / "e", {"server": server.url, "certificate-authority-data": ca_b64}, {
            "client-certificate-data": base64.b64encode(b"not a cert").decode(),
            "client-key-data": base64.b64encode(key).decode()})
        with pytest.raises(ConfigError, match="cannot load credentials"):
            await load_config(str(broken), environ={}).connect()


async def test_basic_auth_header(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path / "k", {"server": "http://127.0.0.1:1"}, {"username": "ann", "password": "s3cret"})
    conn = await load_config(str(kc), environ={}).connect()
    assert await conn.auth() == {"Authorization": "Basic YW5uOnMzY3JldA=="}


async def test_in_cluster_service_account_against_the_emulator(tmp_path: Path) -> None:
    async with APIServer() as server:
        assert server.ca_path is not None
        (tmp_path / "token").write_text(server.token)
        (tmp_path / "ca.crt").write_bytes(server.ca_path.read_bytes())
        cfg = load_config(environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                   "KUBERNETES_SERVICE_PORT": str(server.port)},
                          service_account_dir=str(tmp_path))
        assert cfg.in_cluster
        assert await _namespace_default(cfg) == "default"


async def test_rotated_service_account_token_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "TOKEN_FILE_RELOAD", 0.0)  # client-go re-reads every minute; test: always
    async with APIServer() as server:
        assert server.ca_path is not None
        (tmp_path / "token").write_text("expired-token")
        (tmp_path / "ca.crt").write_bytes(server.ca_path.read_bytes())
        cfg = load_config(environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                   "KUBERNETES_SERVICE_PORT": str(server.port)},
                          service_account_dir=str(tmp_path)).with_rate(0)
        async with Client(cfg) as client:
            with pytest.raises(Unauthorized):
                await client.get(GVK("", "v1", "Namespace"), "default")
            (tmp_path / "token").write_text(server.token)  # the kubelet rotated the projected token
            assert (await client.get(GVK("", "v1", "Namespace"), "default"))["metadata"]["name"] == "default"
