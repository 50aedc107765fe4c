"""Push and pull a directory of files (a LoRA adapter, a dataset) as an OCI artifact, with the ``oras`` SDK.

``python -m kaito.runtime.oci push DIR REF [--docker-config FILE] [--model-name NAME] [--plain-http]
[--wait-for FILE --wait-timeout S]`` and ``python -m kaito.runtime.oci pull REF DIR [...]``.

- One layer per top-level file, titled with its file name (``org.opencontainers.image.title``), so ``oras pull``
  and this module both restore the files under their names. The manifest carries the annotation
  ``sh.kaito.model.name`` (:data:`MODEL_NAME_ANNOTATION`) naming the base model an adapter belongs to.
- Credentials come from a docker ``config.json`` (the Kubernetes ``kubernetes.io/dockerconfigjson`` secret's
  ``.dockerconfigjson`` key, i.e. the Workspace's ``imagePushSecret``/``imagePullSecrets``), never from the
  machine's own ``~/.docker``.
- Before any transfer, :func:`check_access` asks the registry once (``GET /v2/``, and a token request for Bearer
  registries) whether the credentials work, so a wrong secret fails in one round trip with a message that names
  the registry and the user, instead of going through the SDK's retry loop (5 attempts, up to ~2 minutes).
- Every pulled file is checked against its layer's sha256 digest.

Exit codes of the CLI: 0 done, 1 transfer or registry error, 2 bad arguments, 3 authentication rejected,
4 ``--wait-for`` timed out or was aborted by the ``--abort-if`` file (the tuning job's failure marker).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("kaito.runtime.oci")

MODEL_NAME_ANNOTATION = "sh.kaito.model.name"
"""Manifest annotation naming the base model of an adapter (upstream Kaito's push sidecar sets it)."""

TITLE_ANNOTATION = "org.opencontainers.image.title"
"""Layer annotation holding the file name (OCI image spec)."""

REQUEST_TIMEOUT_S = 30.0
"""Timeout of the pre-flight requests to the registry (seconds)."""

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_WAIT_TIMEOUT = 0, 1, 2, 3, 4


class OCIError(RuntimeError):
    """A registry or transfer error; the message names the registry/reference and the fix."""


class RegistryAuthError(OCIError):
    """The registry refused the credentials (or needs some and none were given)."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference ``registry/repository[:tag|@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        ref = f"{self.registry}/{self.repository}"
        if self.digest:
            return f"{ref}@{self.digest}"
        return f"{ref}:{self.tag or 'latest'}"


def parse_reference(ref: str) -> Reference:
    """Parse ``registry/repo[:tag|@sha256:...]``; the registry part is required (a host with a dot or a port, or
    ``localhost``), since adapters never live on an implicit default registry.

    Raises:
        ValueError: the reference has no registry host or repository, or an empty tag.
    """
    name, _, digest_part = ref.partition("@")
    digest = digest_part or None
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not tag:
            raise ValueError(f"image {ref!r}: empty tag after ':'; write registry/repository:tag")
    host, _, repo = name.partition("/")
    if not repo or not ("." in host or ":" in host or host == "localhost"):
        raise ValueError(
            f"image {ref!r}: needs a registry host, e.g. myregistry.azurecr.io/adapters/name:tag or "
            "127.0.0.1:5000/adapters/name:tag"
        )
    return Reference(host, repo, tag, digest)


def load_docker_config(path: str | Path) -> dict[str, Any]:
    """Read a docker ``config.json`` (or a directory holding one).

    Raises:
        OCIError: missing or not JSON (names the path).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        doc = json.loads(p.read_text())
    except OSError as e:
        raise OCIError(f"docker config {p}: cannot read it ({e.strerror}); mount the push/pull secret there") from e
    except json.JSONDecodeError as e:
        raise OCIError(f"docker config {p}: not JSON ({e.msg}); the secret's .dockerconfigjson must be JSON") from e
    if not isinstance(doc, dict):
        raise OCIError(f"docker config {p}: expected a JSON object with 'auths'")
    return doc


def _host_of(key: str) -> str:
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0]


def credentials_for(config: Mapping[str, Any], registry: str) -> tuple[str, str] | None:
    """Username and password for ``registry`` from a docker config's ``auths`` (``auth`` = base64 ``user:pass``, or
    ``username``/``password``); keys may carry a scheme or a path (``https://host/v1/``).

    Raises:
        OCIError: the matching entry is malformed.
    """
    auths = config.get("auths") or {}
    for key, entry in auths.items():
        if _host_of(str(key)) != registry or not isinstance(entry, Mapping):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise OCIError(f"docker config: auths[{key!r}].auth is not base64 of 'user:password'") from e
            if not sep:
                raise OCIError(f"docker config: auths[{key!r}].auth must encode 'user:password'")
            return user, password
        if entry.get("username") is not None:
            return str(entry["username"]), str(entry.get("password") or "")
    return None


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        if k:
            params[k.strip()] = v.strip().strip('"')
    return scheme.lower(), params


@dataclass(frozen=True)
class Access:
    """How to talk to a registry: the oras auth backend (``basic``/``token``) and credentials."""

    backend: str
    credentials: tuple[str, str] | None


def check_access(
    ref: Reference, credentials: tuple[str, str] | None, *, plain_http: bool = False, push: bool = False
) -> Access:
    """Ask the registry once whether ``credentials`` may push/pull ``ref``.

    Raises:
        OCIError: the registry is unreachable or does not speak the OCI distribution API.
        RegistryAuthError: credentials are required and missing, or rejected.
    """
    import requests

    base = f"{'http' if plain_http else 'https'}://{ref.registry}"
    try:
        r = requests.get(f"{base}/v2/", timeout=REQUEST_TIMEOUT_S)
    except requests.RequestException as e:
        hint = " (a plain-HTTP registry needs --plain-http)" if not plain_http else ""
        raise OCIError(f"registry {ref.registry} is unreachable{hint}: {type(e).__name__}: {e}") from e
    if r.status_code == 200:
        return Access("token", credentials)
    if r.status_code != 401:
        raise OCIError(f"registry {ref.registry}: GET /v2/ answered {r.status_code}; is this an OCI registry?")
    # Bearer registries (ACR, GHCR, Docker Hub) hand out tokens, anonymous ones too for public pulls; Basic ones
    # (htpasswd) need credentials.
    scheme, params = _parse_challenge(r.headers.get("Www-Authenticate", ""))
    who = f"user {credentials[0]!r}" if credentials else "anonymous"
    if credentials is None and scheme != "bearer":
        raise RegistryAuthError(
            f"registry {ref.registry} requires authentication and the docker config has no entry for it; add "
            f"{ref.registry} to the secret's auths"
        )
    if scheme == "basic":
        r2 = requests.get(f"{base}/v2/", auth=credentials, timeout=REQUEST_TIMEOUT_S)
        if r2.status_code in (401, 403):
            raise RegistryAuthError(
                f"registry {ref.registry} rejected the credentials ({who}): HTTP {r2.status_code}; fix the "
                "username/password in the image push/pull secret"
            )
        return Access("basic", credentials)
    if scheme == "bearer" and params.get("realm"):
        action = "pull,push" if push else "pull"
        query = {"scope": f"repository:{ref.repository}:{action}"}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            t = requests.get(params["realm"], params=query, auth=credentials, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as e:
            raise OCIError(f"registry {ref.registry}: token service {params['realm']} unreachable: {e}") from e
        if t.status_code != 200:
            fix = "fix the image push/pull secret" if credentials else f"add {ref.registry} to the secret's auths"
            raise RegistryAuthError(
                f"registry {ref.registry} rejected the credentials ({who}) for {action} on {ref.repository}: "
                f"HTTP {t.status_code}; {fix}"
            )
        return Access("token", credentials)
    raise OCIError(f"registry {ref.registry}: unsupported authentication challenge {scheme!r}")


def _client(ref: Reference, access: Access, plain_http: bool) -> Any:
    import oras.client

    client = oras.client.OrasClient(hostname=ref.registry, insecure=plain_http, auth_backend=access.backend)
    # A non-empty auth config stops oras from reading the machine's ~/.docker/config.json.
    client.auth._auth_config = {"auths": {}}
    if access.credentials is not None:
        client.auth.set_basic_auth(*access.credentials)
    return client


@dataclass(frozen=True)
class PushResult:
    """A pushed artifact: its manifest digest and the files it holds."""

    reference: str
    digest: str
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PullResult:
    """A pulled artifact: the files written and the manifest's annotations."""

    reference: str
    files: list[Path] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


def _docker_config(docker_config: str | Path | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if docker_config is None:
        return {}
    if isinstance(docker_config, Mapping):
        return docker_config
    return load_docker_config(docker_config)


def push(
    directory: str | Path,
    reference: str,
    *,
    docker_config: str | Path | Mapping[str, Any] | None = None,
    model_name: str | None = None,
    files: Sequence[str] | None = None,
    plain_http: bool = False,
) -> PushResult:
    """Push the top-level files of ``directory`` as one OCI artifact.

    Args:
        directory: e.g. the tuning output dir with ``adapter_config.json`` and ``adapter_model.safetensors``.
        reference: ``registry/repository:tag``.
        docker_config: path of a docker ``config.json`` (or its parsed content) with the registry's credentials.
        model_name: value of the ``sh.kaito.model.name`` manifest annotation.
        files: names of the files to push; default every non-hidden regular file at the top level.
        plain_http: talk HTTP instead of HTTPS (a registry on localhost in tests or ``kaito dev``).

    Raises:
        ValueError: bad reference; OCIError: nothing to push or a registry error; RegistryAuthError: bad secret.
    """
    ref = parse_reference(reference)
    src = Path(directory)
    if not src.is_dir():
        raise OCIError(f"push: {src} is not a directory")
    names = list(files) if files else sorted(p.name for p in src.iterdir() if p.is_file() and p.name[0] != ".")
    missing = [n for n in names if not (src / n).is_file()]
    if missing:
        raise OCIError(f"push: {', '.join(missing)} not found in {src}")
    if not names:
        raise OCIError(f"push: {src} has no files to push")
    credentials = credentials_for(_docker_config(docker_config), ref.registry)
    access = check_access(ref, credentials, plain_http=plain_http, push=True)
    client = _client(ref, access, plain_http)
    annotations = {MODEL_NAME_ANNOTATION: model_name} if model_name else None
    try:
        response = client.push(
            target=str(ref),
            files=[str((src / n).resolve()) for n in names],
            disable_path_validation=True,
            manifest_annotations=annotations,
            quiet=True,
        )
    except (ValueError, OSError) as e:
        raise OCIError(f"push {ref}: {e}") from e
    digest = response.headers.get("Docker-Content-Digest", "")
    log.info("oci.pushed", reference=str(ref), digest=digest, files=names)
    return PushResult(str(ref), digest, names)


def pull(
    reference: str,
    directory: str | Path,
    *,
    docker_config: str | Path | Mapping[str, Any] | None = None,
    plain_http: bool = False,
) -> PullResult:
    """Pull an artifact's files into ``directory`` (created if missing) and verify each against its digest.

    Raises:
        ValueError: bad reference; OCIError: not found, registry error or digest mismatch;
        RegistryAuthError: bad secret.
    """
    ref = parse_reference(reference)
    access = check_access(ref, credentials_for(_docker_config(docker_config), ref.registry), plain_http=plain_http)
    client = _client(ref, access, plain_http)
    dest = Path(directory)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        manifest = client.get_manifest(str(ref))
    except ValueError as e:
        raise OCIError(f"pull {ref}: manifest not found or unreadable ({e}); check the image name and tag") from e
    try:
        written = client.pull(target=str(ref), outdir=str(dest))
    except (ValueError, OSError) as e:
        raise OCIError(f"pull {ref}: {e}") from e
    by_title = {(layer.get("annotations") or {}).get(TITLE_ANNOTATION): layer for layer in manifest.get("layers", [])}
    paths = [Path(p) for p in written]
    for path in paths:
        layer = by_title.get(path.name)
        if layer is None:
            continue
        algo, _, expected = str(layer["digest"]).partition(":")
        if algo == "sha256" and _sha256(path) != expected:
            raise OCIError(f"pull {ref}: {path.name} does not match its layer digest {layer['digest']}")
    log.info("oci.pulled", reference=str(ref), files=[p.name for p in paths], dest=str(dest))
    return PullResult(str(ref), paths, dict(manifest.get("annotations") or {}))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wait_for_file(
    path: Path,
    timeout_s: float,
    *,
    abort_if: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval_s: float = 2.0,
) -> bool:
    """Poll every ``interval_s`` seconds until ``path`` exists (the tuning job's completion marker).

    Returns:
        ``True`` once it exists; ``False`` after ``timeout_s`` seconds or as soon as ``abort_if`` exists (the job's
        failure marker), whichever comes first.
    """
    deadline = clock() + timeout_s
    while not path.exists():
        if (abort_if is not None and abort_if.exists()) or clock() >= deadline:
            return False
        sleep(interval_s)
    return True


def _default_docker_config() -> str | None:
    env = os.environ.get("DOCKER_CONFIG")
    if env and Path(env, "config.json").is_file():
        return str(Path(env, "config.json"))
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``push``/``pull`` command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m kaito.runtime.oci", description="Push/pull files as an OCI artifact")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("push", "pull"):
        s = sub.add_parser(name)
        if name == "push":
            s.add_argument("directory")
            s.add_argument("reference")
            s.add_argument("--model-name", help=f"value of the {MODEL_NAME_ANNOTATION} manifest annotation")
            s.add_argument("--file", action="append", dest="files", help="push only this file (repeatable)")
            s.add_argument("--wait-for", help="wait until this file exists before pushing (the completion marker)")
            s.add_argument("--wait-timeout", type=float, default=86400.0, help="seconds to wait (default 86400)")
            s.add_argument("--abort-if", help="stop waiting (exit 4) when this file appears (the failure marker)")
        else:
            s.add_argument("reference")
            s.add_argument("directory")
        s.add_argument(
            "--docker-config",
            default=_default_docker_config(),
            help="docker config.json with credentials (default $DOCKER_CONFIG/config.json)",
        )
        s.add_argument("--plain-http", action="store_true", help="HTTP instead of HTTPS (local registries)")
    return p


def is_loopback_registry(registry: str) -> bool:
    """True for ``localhost[:port]``, ``127.x.y.z[:port]`` and ``[::1][:port]``: registries that Docker treats as
    insecure (plain HTTP) by default, as the CLI does when ``--plain-http`` is not given."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    host = host.strip("[]")
    if registry.startswith("[") and "]" in registry:
        host = registry[1:registry.index("]")]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (module docstring)."""
    args = build_parser().parse_args(argv)
    if not args.plain_http:
        try:
            args.plain_http = is_loopback_registry(parse_reference(args.reference).registry)
        except ValueError:
            pass  # push/pull report the bad reference with its exit code
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        if args.command == "push":
            abort_if = Path(args.abort_if) if args.abort_if else None
            if args.wait_for and not wait_for_file(Path(args.wait_for), args.wait_timeout, abort_if=abort_if):
                log.error("oci.wait_ended", file=args.wait_for, timeout_s=args.wait_timeout, aborted_by=args.abort_if)
                return EXIT_WAIT_TIMEOUT
            result = push(
                args.directory,
                args.reference,
                docker_config=args.docker_config,
                model_name=args.model_name,
                files=args.files,
                plain_http=args.plain_http,
            )
            print(json.dumps({"reference": result.reference, "digest": result.digest, "files": result.files}))
        else:
            pulled = pull(args.reference, args.directory, docker_config=args.docker_config, plain_http=args.plain_http)
            print(json.dumps({"reference": pulled.reference, "files": [p.name for p in pulled.files]}))
    except ValueError as e:
        log.error("oci.invalid", command=args.command, error=str(e))
        return EXIT_USAGE
    except RegistryAuthError as e:
        log.error("oci.auth_rejected", command=args.command, error=str(e))
        return EXIT_AUTH
    except OCIError as e:
        log.error("oci.failed", command=args.command, error=str(e))
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
