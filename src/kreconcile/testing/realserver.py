"""A real Kubernetes 1.20 control plane for tests: ``hack/real-apiserver.sh`` driven from asyncio.

:class:`RealAPIServer` is the real-server twin of :class:`kreconcile.testing.APIServer`: an async context manager
that runs ``hack/real-apiserver.sh start STATE_DIR`` (etcd, kube-apiserver v1.20.2, kube-controller-manager and
optionally kube-scheduler on 127.0.0.1), exposes the kubeconfig it wrote and the URL, and runs ``stop`` on exit,
which kills every process the script started. When the binaries are not cached yet the script builds them first
(Debian bookworm's ``kubernetes`` source package; about 8 minutes on 2 cores, see ``docs/real-apiserver.md``).

Example::

    async with RealAPIServer(controllers=("garbagecollector", "namespace")) as server:
        await kubernetes_asyncio.config.load_kube_config(config_file=str(server.kubeconfig_path))

The script needs Debian bookworm and root to install missing packages (``golang-go``, ``etcd-server``, ...);
elsewhere it fails with the ``apt-get install`` line to run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "DEFAULT_CONTROLLERS",
    "RealAPIServer",
    "RealAPIServerError",
    "binaries_cached",
    "build_real_apiserver",
    "default_cache_dir",
    "default_script_path",
]

DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "garbagecollector",
    "namespace",
    "deployment",
    "replicaset",
    "statefulset",
    "job",
    "endpoint",
    "endpointslice",
    "serviceaccount",
    "serviceaccount-token",
)
"""kube-controller-manager controllers started by default: the ones tests and ``LocalCluster(backend="real")`` need
(issue 4: garbage collector, namespace lifecycle, Deployment/ReplicaSet/StatefulSet/Job, Service endpoints), plus
the ServiceAccount controllers so namespaces get their ``default`` ServiceAccount and token as on a real cluster."""

_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
_PROCESS_NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "watchdog")


class RealAPIServerError(RuntimeError):
    """``hack/real-apiserver.sh`` failed; the message carries its exit code and the tail of its output."""


def default_script_path() -> Path:
    """``hack/real-apiserver.sh`` of this checkout, or ``$KAITO_REAL_APISERVER_SCRIPT`` when set.

    The script is not part of the installed wheel; outside a checkout point the variable at a copy of it.
    """
    env = os.environ.get("KAITO_REAL_APISERVER_SCRIPT")
    if env:
        return Path(env)
    # src/kreconcile/testing/realserver.py -> repository root is three levels above the package directory.
    return Path(__file__).resolve().parents[3] / "hack" / "real-apiserver.sh"


def default_cache_dir() -> Path:
    """Where the script caches binaries: ``$KAITO_K8S_CACHE`` or ``$XDG_CACHE_HOME|~/.cache`` + ``kaito-py/k8s-1.20``.

    Mirrors the script's ``CACHE`` variable; binaries live in ``bin/`` under it.
    """
    env = os.environ.get("KAITO_K8S_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kaito-py" / "k8s-1.20"


def binaries_cached(cache_dir: Path | None = None) -> bool:
    """True when kube-apiserver, kube-controller-manager and kube-scheduler are built in ``cache_dir/bin``."""
    bin_dir = (cache_dir or default_cache_dir()) / "bin"
    return all(os.access(bin_dir / name, os.X_OK) for name in _COMPONENTS)


def _is_file(path: Path) -> bool:
    return path.is_file()


async def _run_script(script: Path, args: Sequence[str], env: dict[str, str] | None, timeout: float) -> str:
    """Run ``bash script *args``; return its combined output. Raises :class:`RealAPIServerError` on failure/timeout."""
    if not _is_file(script):
        raise RealAPIServerError(
            f"script {script} not found: RealAPIServer needs hack/real-apiserver.sh from a kaito-py checkout; "
            "set KAITO_REAL_APISERVER_SCRIPT to its path or pass script=..."
        )
    bash = shutil.which("bash")
    if bash is None:
        raise RealAPIServerError("bash not found on PATH: hack/real-apiserver.sh needs bash")
    proc = await asyncio.create_subprocess_exec(
        bash,
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        # The script runs in its own session: end it (and a build's go processes) as a group, not just bash.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-40:])
        raise RealAPIServerError(f"bash {script} {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return text


async def build_real_apiserver(script: Path | None = None, timeout: float = 3600.0) -> str:
    """Build (or find cached) the 1.20 binaries: ``hack/real-apiserver.sh build``; returns the script's log.

    ``timeout`` is in seconds (default 1 h: a cold build takes about 8 min on 2 idle cores, much longer on a busy
    machine). Raises :class:`RealAPIServerError` when the build fails, ``TimeoutError`` when it runs past ``timeout``.
    """
    return await _run_script(script or default_script_path(), ["build"], None, timeout)


class RealAPIServer:
    """etcd + kube-apiserver v1.20.2 + kube-controller-manager (+ kube-scheduler) on 127.0.0.1, as a context manager.

    ``state_dir``: where certificates, etcd data, logs, pid files and the kubeconfig go; ``None`` (default) makes a
    temporary directory that is deleted on exit. Reusing a directory keeps its objects (etcd data) across restarts.
    ``controllers``: the kube-controller-manager ``--controllers`` list (default :data:`DEFAULT_CONTROLLERS`; names
    as in ``kube-controller-manager --help``; ``"*"`` enables its own defaults). ``scheduler``: also start
    kube-scheduler (off by default: without nodes every pod stays Pending either way, and LocalCluster brings its
    own nodes). ``port``: kube-apiserver's secure port on 127.0.0.1 (1-65535; default: a free port chosen at start).
    ``stop_with_process``: the script's watchdog stops the control plane when this Python process exits, even by
    SIGKILL or a crash, so no orphan etcd/apiserver outlives a killed test run (default on; polls once a second).
    ``start_timeout``: seconds for ``start`` including a build when binaries are missing (default 1 h).

    After ``__aenter__``: :attr:`kubeconfig_path` (client-certificate user in group ``system:masters``),
    :attr:`token_kubeconfig_path` (same user with a static bearer token), :attr:`url`, :attr:`ca_path`.
    Raises :class:`RealAPIServerError` with the script's output tail when start fails (everything it launched is
    stopped first); ``ValueError``/``TypeError`` for a bad ``controllers`` or ``port``.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        controllers: Sequence[str] | None = None,
        *,
        scheduler: bool = False,
        port: int | None = None,
        stop_with_process: bool = True,
        script: str | os.PathLike[str] | None = None,
        start_timeout: float = 3600.0,
        stop_timeout: float = 60.0,
    ) -> None:
        if controllers is not None:
            if isinstance(controllers, str):
                raise TypeError(
                    "controllers must be a sequence of names, e.g. ('garbagecollector', 'namespace'), not a string"
                )
            bad = [c for c in controllers if not c or "," in c or c.strip() != c]
            if bad or not controllers:
                raise ValueError(
                    f"controllers: {list(controllers)!r} is not a list of kube-controller-manager controller names "
                    "(non-empty, no commas or spaces), e.g. ('garbagecollector', 'namespace', 'deployment')"
                )
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise ValueError(f"port: {port!r} is not a TCP port; use 1-65535, or None for a free port")
        self._port = port
        self._stop_with_process = stop_with_process
        self._requested_state_dir = Path(state_dir) if state_dir is not None else None
        self._controllers = tuple(controllers) if controllers is not None else DEFAULT_CONTROLLERS
        self._scheduler = scheduler
        self._script = Path(script) if script is not None else default_script_path()
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._state_dir: Path | None = None
        self._temporary = False
        self._url: str | None = None

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def state_dir(self) -> Path:
        """The state directory (certificates in ``pki/``, ``etcd/``, ``logs/``, ``run/*.pid``, ``kubeconfig``)."""
        if self._state_dir is None:
            raise RuntimeError("RealAPIServer is not started: use `async with RealAPIServer(...) as server:`")
        return self._state_dir

    @property
    def kubeconfig_path(self) -> Path:
        """kubeconfig with the admin client certificate (``O=system:masters``); kubectl and kubernetes-asyncio."""
        return self.state_dir / "kubeconfig"

    @property
    def token_kubeconfig_path(self) -> Path:
        """kubeconfig for the same admin user authenticated by a static bearer token (``--token-auth-file``)."""
        return self.state_dir / "kubeconfig-token"

    @property
    def ca_path(self) -> Path:
        """PEM of the CA that signed the serving certificate (and the client certificates)."""
        return self.state_dir / "pki" / "ca.crt"

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>`` of kube-apiserver."""
        if self._url is None:
            raise RuntimeError("RealAPIServer is not started: use `async with RealAPIServer(...) as server:`")
        return self._url

    def pids(self) -> dict[str, int]:
        """Pid of each started process by name (``etcd``, ``kube-apiserver``, ..., ``watchdog``), from ``run/*.pid``."""
        out: dict[str, int] = {}
        for name in _PROCESS_NAMES:
            pid_file = self.state_dir / "run" / f"{name}.pid"
            if pid_file.is_file():
                text = pid_file.read_text().strip()
                if text.isdigit():
                    out[name] = int(text)
        return out

    # ------------------------------------------------------------------------------------------------ lifecycle
    def _env(self) -> dict[str, str]:
        env = {
            "REAL_APISERVER_CONTROLLERS": ",".join(self._controllers),
            "REAL_APISERVER_SCHEDULER": "1" if self._scheduler else "0",
        }
        if self._port is not None:
            env["REAL_APISERVER_PORT"] = str(self._port)
        if self._stop_with_process:
            env["REAL_APISERVER_OWNER_PID"] = str(os.getpid())
        return env

    async def start(self) -> None:
        """Start (building first when binaries are missing) and wait until ``/readyz`` answers 200."""
        if self._requested_state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="kaito-real-apiserver-"))
            self._temporary = True
        else:
            self._requested_state_dir.mkdir(parents=True, exist_ok=True)
            self._state_dir = self._requested_state_dir.resolve()
        try:
            await _run_script(self._script, ["start", str(self._state_dir)], self._env(), self._start_timeout)
        except BaseException:
            await self.stop()
            raise
        self._url = (self._state_dir / "url").read_text().strip()

    async def stop(self) -> None:
        """Stop every process ``start`` launched (SIGTERM, SIGKILL after 10 s); delete a temporary state dir."""
        if self._state_dir is None:
            return
        try:
            await _run_script(self._script, ["stop", str(self._state_dir)], None, self._stop_timeout)
        finally:
            if self._temporary:
                shutil.rmtree(self._state_dir, ignore_errors=True)
                self._state_dir = None
            self._url = None

    async def __aenter__(self) -> RealAPIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
