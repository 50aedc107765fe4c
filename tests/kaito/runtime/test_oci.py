"""OCI push/pull of adapter directories against a real registry (Debian's docker-registry on 127.0.0.1)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kaito.runtime import oci
from tests.fixtures.registry import Registry, running_registry


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry process on 127.0.0.1 (plain HTTP)."""
    with running_registry(tmp_path_factory.mktemp("registry"), auth=False) as reg:
        yield reg


@pytest.fixture
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry process that requires basic auth (kaito / s3cret)."""
    with running_registry(tmp_path_factory.mktemp("registry"), auth=True) as reg:
        yield reg


def _adapter_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"]}))
    (path / "adapter_model.safetensors").write_bytes(os.urandom(256 * 1024) + b"\x00tail")
    (path / ".hidden").write_text("not pushed")
    return path


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_pushed_adapter_pulls_back_byte_identical_with_model_annotation(registry: Registry, tmp_path: Path) -> None:
    src = _adapter_dir(tmp_path / "adapter")
    ref = f"{registry.host}/adapters/zorblax:v1"

    pushed = oci.push(src, ref, model_name="smollm2-135m-instruct", plain_http=True)
    pulled = oci.pull(ref, tmp_path / "out", plain_http=True)

    assert pushed.files == ["adapter_config.json", "adapter_model.safetensors"]
    assert pushed.digest.startswith("sha256:")
    assert _files(tmp_path / "out") == {k: v for k, v in _files(src).items() if not k.startswith(".")}
    assert pulled.annotations[oci.MODEL_NAME_ANNOTATION] == "smollm2-135m-instruct"
    # The registry serves the manifest under the digest push reported.
    r = requests.get(
        f"http://{registry.host}/v2/adapters/zorblax/manifests/{pushed.digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    assert r.status_code == 200
    assert {layer["annotations"][oci.TITLE_ANNOTATION] for layer in r.json()["layers"]} == set(pushed.files)


@pytest.mark.slow
def test_push_and_pull_with_the_push_secret_on_an_authenticated_registry(
    auth_registry: Registry,
    tmp_path: Path,
) -> None:
    src = _adapter_dir(tmp_path / "adapter")
    secret = auth_registry.docker_config(tmp_path / "config.json")
    ref = f"{auth_registry.host}/adapters/private:1"

    oci.push(src, ref, docker_config=secret, plain_http=True)
    oci.pull(ref, tmp_path / "out", docker_config=secret, plain_http=True)

    assert _files(tmp_path / "out")["adapter_model.safetensors"] == (src / "adapter_model.safetensors").read_bytes()


@pytest.mark.slow
def test_wrong_push_secret_is_rejected_with_registry_and_user_named(
    auth_registry: Registry,
    tmp_path: Path,
) -> None:
    src = _adapter_dir(tmp_path / "adapter")
    secret = auth_registry.docker_config(tmp_path / "config.json", password="wrong")

    with pytest.raises(oci.RegistryAuthError) as err:
        oci.push(src, f"{auth_registry.host}/adapters/private:1", docker_config=secret, plain_http=True)

    assert auth_registry.host in str(err.value)
    assert "'kaito'" in str(err.value)
    assert "secret" in str(err.value)
    # Nothing was written to the registry.
    r = requests.get(f"http://{auth_registry.host}/v2/_catalog", auth=("kaito", "s3cret"), timeout=10)
    assert r.json()["repositories"] == []


@pytest.mark.slow
def test_missing_credentials_for_an_authenticated_registry_name_the_registry(
    auth_registry: Registry,
    tmp_path: Path,
) -> None:
    other = {"auths": {"elsewhere.example.com": {"auth": base64.b64encode(b"a:b").decode()}}}
    with pytest.raises(oci.RegistryAuthError, match="no entry for it"):
        oci.pull(f"{auth_registry.host}/adapters/x:1", tmp_path / "out", docker_config=other, plain_http=True)


@pytest.mark.slow
def test_pull_of_an_unknown_tag_says_not_found(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(oci.OCIError, match="not found"):
        oci.pull(f"{registry.host}/adapters/none:v9", tmp_path / "out", plain_http=True)


@pytest.mark.slow
def test_cli_push_waits_for_marker_then_pull_restores_files(registry: Registry, tmp_path: Path) -> None:
    src = _adapter_dir(tmp_path / "adapter")
    (src / "fine_tuning_completed.txt").write_text("{}")
    ref = f"{registry.host}/adapters/cli:v1"
    env = {**os.environ, "PYTHONPATH": str(Path(oci.__file__).parents[2])}

    push = subprocess.run(
        [sys.executable, "-m", "kaito.runtime.oci", "push", str(src), ref, "--plain-http", "--model-name", "m",
         "--file", "adapter_config.json", "--file", "adapter_model.safetensors",
         "--wait-for", str(src / "fine_tuning_completed.txt")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    pull = subprocess.run(
        [sys.executable, "-m", "kaito.runtime.oci", "pull", ref, str(tmp_path / "out"), "--plain-http"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip

    assert push.returncode == 0, push.stderr
    assert json.loads(push.stdout)["files"] == ["adapter_config.json", "adapter_model.safetensors"]
    assert pull.returncode == 0, pull.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def test_cli_wrong_secret_exits_3_with_a_clear_message(auth_registry: Registry, tmp_path: Path) -> None:
    src = _adapter_dir(tmp_path / "adapter")
    secret = auth_registry.docker_config(tmp_path / "config.json", username="kaito", password="nope")

    proc = subprocess.run(
        [sys.executable, "-m", "kaito.runtime.oci", "push", str(src), f"{auth_registry.host}/a/b:1", "--plain-http",
         "--docker-config", str(secret)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert proc.returncode == oci.EXIT_AUTH
    assert "rejected the credentials" in proc.stderr


@pytest.mark.slow
def test_unreachable_registry_fails_fast_naming_the_host(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on the port now
    with pytest.raises(oci.OCIError, match=f"127.0.0.1:{port} is unreachable"):
        oci.pull(f"127.0.0.1:{port}/a/b:1", tmp_path / "out", plain_http=True)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("127.0.0.1:5000/adapters/x:v1", oci.Reference("127.0.0.1:5000", "adapters/x", "v1")),
        ("myreg.azurecr.io/a/b/c", oci.Reference("myreg.azurecr.io", "a/b/c", None)),
        ("localhost/x@sha256:abc", oci.Reference("localhost", "x", None, "sha256:abc")),
    ],
)
def test_reference_parsing(ref: str, expected: oci.Reference) -> None:
    assert oci.parse_reference(ref) == expected


@pytest.mark.parametrize("ref", ["adapters/x:v1", "x", "myreg.io/x:"])
def test_reference_without_registry_or_with_empty_tag_is_rejected(ref: str) -> None:
    with pytest.raises(ValueError, match="image"):
        oci.parse_reference(ref)


def test_credentials_from_docker_config_formats() -> None:
    cfg = {
        "auths": {
            "https://a.example.io/v1/": {"auth": base64.b64encode(b"user:pa:ss").decode()},
            "b.example.io": {"username": "u2", "password": "p2"},
        }
    }
    assert oci.credentials_for(cfg, "a.example.io") == ("user", "pa:ss")
    assert oci.credentials_for(cfg, "b.example.io") == ("u2", "p2")
    assert oci.credentials_for(cfg, "c.example.io") is None
    with pytest.raises(oci.OCIError, match="user:password"):
        oci.credentials_for({"auths": {"d.io": {"auth": base64.b64encode(b"nocolon").decode()}}}, "d.io")


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: list[object] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.on_sleep:
            action = self.on_sleep.pop(0)
            if callable(action):
                action()


def test_wait_for_file_returns_once_the_marker_appears(tmp_path: Path) -> None:
    t = _FakeTime()
    marker = tmp_path / "fine_tuning_completed.txt"
    t.on_sleep = [None, lambda: marker.write_text("{}")]
    assert oci.wait_for_file(marker, 60, clock=t.clock, sleep=t.sleep, interval_s=2)
    assert t.now == 4


def test_wait_for_file_stops_at_the_failure_marker_or_the_timeout(tmp_path: Path) -> None:
    t = _FakeTime()
    failed = tmp_path / "fine_tuning_failed.txt"
    t.on_sleep = [lambda: failed.write_text("{}")]
    assert not oci.wait_for_file(tmp_path / "done", 60, abort_if=failed, clock=t.clock, sleep=t.sleep, interval_s=2)
    assert t.now == 2

    t2 = _FakeTime()
    assert not oci.wait_for_file(tmp_path / "done", 10, clock=t2.clock, sleep=t2.sleep, interval_s=2)
    assert t2.now == 10


@pytest.fixture
def bearer_registry() -> Iterator[str]:
    """A stand-in for a token-auth registry (ACR, GHCR): /v2/ challenges with Bearer; /token grants a token to
    kaito/s3cret for any scope and to anonymous callers for pull scopes only."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            host = f"127.0.0.1:{self.server.server_address[1]}"
            if self.path == "/v2/":
                self.send_response(401)
                self.send_header("Www-Authenticate", f'Bearer realm="http://{host}/token",service="{host}"')
                self.end_headers()
                return
            auth = self.headers.get("Authorization", "")
            good = auth == "Basic " + base64.b64encode(b"kaito:s3cret").decode()
            anonymous_pull = not auth and "push" not in self.path
            body = json.dumps({"token": "t"}).encode() if good or anonymous_pull else b"{}"
            self.send_response(200 if good or anonymous_pull else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_token_registry_credentials_are_checked_at_the_token_service(bearer_registry: str) -> None:
    ref = oci.parse_reference(f"{bearer_registry}/adapters/x:1")

    assert oci.check_access(ref, ("kaito", "s3cret"), plain_http=True, push=True).backend == "token"
    assert oci.check_access(ref, None, plain_http=True).credentials is None  # anonymous pull of a public image
    with pytest.raises(oci.RegistryAuthError, match=r"rejected the credentials \(user 'kaito'\) for pull,push"):
        oci.check_access(ref, ("kaito", "wrong"), plain_http=True, push=True)
    with pytest.raises(oci.RegistryAuthError, match=r"anonymous.*add .* to the secret's auths"):
        oci.check_access(ref, None, plain_http=True, push=True)


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [("localhost:5000", True), ("127.0.0.1:41234", True), ("[::1]:5000", True), ("localhost", True),
     ("myacr.azurecr.io", False), ("10.0.0.5:5000", False), ("registry.example.com:443", False)],
)
def test_loopback_registries_default_to_plain_http_like_docker(registry: str, loopback: bool) -> None:
    from kaito.runtime.oci import is_loopback_registry

    assert is_loopback_registry(registry) is loopback
