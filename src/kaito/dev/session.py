"""``kaito dev up``: the whole of kaito on this machine — a LocalCluster, the CRDs, the operator with the local
provider and the webhook — in one process, until Ctrl-C.

State lives in ``<state_dir>`` (``./.kaito`` by default):

- ``kubeconfig``: for ``kubectl --kubeconfig .kaito/kubeconfig`` (or ``export KUBECONFIG=$PWD/.kaito/kubeconfig``);
- ``cluster/``: the API server's objects (kept between runs: a second ``kaito dev up`` resumes the Workspaces),
  pod sandboxes and logs;
- ``state.json``: the running session (pid, kubeconfig, operator metrics URL, each ready Workspace's endpoint),
  read by ``kaito dev status`` and ``kaito dev down``;
- ``webhook-certs/``: the webhook's self-signed certificate for 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from kaito.api import constants as c
from kaito.api.crd import generate_crds
from kaito.dev.images import UPSTREAM_PREFIX, dev_image_map
from kaito.operator.certs import generate_bundle
from kaito.webhook.config import webhook_configurations
from kreconcile.errors import ApiError, NotFound
from kreconcile.gvk import GVK

DEFAULT_STATE_DIR = Path(".kaito")
STATE_FILE = "state.json"
FIELD_MANAGER = "kaito-dev"
LOCAL_LAUNCH_DELAY_S = 2.0
"""Seconds a local machine takes to "boot", so the progress shows NodeClaim → Node as on a cloud."""
POLL_INTERVAL_S = 1.0
"""Seconds between progress snapshots."""

WORKSPACE = GVK(c.GROUP, c.STORAGE_VERSION, c.WORKSPACE_KIND)
NODECLAIM = GVK(c.KARPENTER_GROUP, c.NODECLAIM_VERSION, c.NODECLAIM_KIND)
NODE = GVK("", "v1", "Node")
POD = GVK("", "v1", "Pod")
CRD = GVK("apiextensions.k8s.io", "v1", "CustomResourceDefinition")


class DevError(RuntimeError):
    """``kaito dev`` cannot do what was asked; the message says why and what to do."""


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The ``state.json`` of a session in ``state_dir``, or None."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_session(state_dir: Path) -> dict[str, Any] | None:
    """The state of a live ``kaito dev up`` in ``state_dir``, or None when none is running."""
    state = read_state(state_dir)
    if state and isinstance(state.get("pid"), int) and pid_alive(state["pid"]):
        return state
    return None


def load_documents(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every YAML document of ``paths`` (files, or directories of ``*.yaml``/``*.yml``), in order.

    Raises:
        DevError: a path is missing, is not YAML, or a document lacks apiVersion/kind/metadata.name.
    """
    docs: list[dict[str, Any]] = []
    for path in paths:
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for f in files:
            try:
                loaded = list(yaml.safe_load_all(f.read_text()))
            except OSError as exc:
                raise DevError(f"{f}: cannot read it ({exc.strerror}); give a Workspace YAML file") from None
            except yaml.YAMLError as exc:
                raise DevError(f"{f}: not valid YAML: {exc}") from None
            for i, doc in enumerate(loaded):
                if doc is None:
                    continue
                if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind") or not (
                    doc.get("metadata") or {}
                ).get("name"):
                    raise DevError(f"{f} document {i + 1}: needs apiVersion, kind and metadata.name")
                docs.append(doc)
    return docs


def curl_commands(address: tuple[str, int], model: str) -> list[str]:
    """Ready-to-paste curl lines for a Workspace served at ``address``: the seed's ``/chat`` and OpenAI's
    ``/v1/chat/completions``, both greedy (``do_sample: false`` / ``temperature: 0``): OpenAI's default
    temperature 1 makes a 135M model answer nonsense."""
    host, port = address
    base = f"http://{host}:{port}"
    chat = json.dumps({"prompt": "What is Kubernetes?", "generate_kwargs": {"max_new_tokens": 40, "do_sample": False}})
    openai = json.dumps({"model": model, "messages": [{"role": "user", "content": "What is Kubernetes?"}],
                         "max_tokens": 40, "temperature": 0})
    return [
        f"curl -s {base}/chat -H 'Content-Type: application/json' -d '{chat}'",
        f"curl -s {base}/v1/chat/completions -H 'Content-Type: application/json' -d '{openai}'",
    ]


def metrics_endpoint(base_url: str | None) -> str | None:
    """The operator's full ``/metrics`` URL from the manager's base URL (``state.json`` keeps the base)."""
    return f"{base_url.rstrip('/')}/metrics" if base_url else None


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _ws_model(ws: dict[str, Any]) -> str:
    preset = ((ws.get("inference") or {}).get("preset") or {}).get("name")
    return str(preset or ws["metadata"]["name"])


def describe_pod(pod: dict[str, Any]) -> str:
    """One line for a pod: phase, readiness, and the waiting reason or the not-runnable image."""
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    parts = [phase]
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state:
            parts.append(f"{cs['name']} waiting: {state['waiting'].get('reason', '')}")
        elif "running" in state:
            parts.append(f"{cs['name']} running, {'ready' if cs.get('ready') else 'loading (not ready yet)'}")
        elif "terminated" in state:
            parts.append(f"{cs['name']} exited {state['terminated'].get('exitCode')}")
        if str(cs.get("image", "")).startswith(UPSTREAM_PREFIX):
            parts.append(f"image {cs.get('image')} is not runnable locally (GPU preset; use smollm2-135m-instruct)")
    if phase == "Pending" and not status.get("containerStatuses"):
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                parts.append(f"unschedulable: {cond.get('message', '')}")
    return "; ".join(parts)


def describe_workspace(ws: dict[str, Any]) -> str:
    """One line: each of ResourceReady / InferenceReady / WorkspaceSucceeded with the reason when not True."""
    parts = []
    for kind in ("ResourceReady", "InferenceReady", "JobStarted", "WorkspaceSucceeded"):
        cond = _condition(ws, kind)
        if cond is None:
            continue
        text = f"{kind}={cond.get('status')}"
        if cond.get("status") != "True" and cond.get("reason"):
            text += f" ({cond['reason']}: {cond.get('message', '')})"
        parts.append(text)
    return ", ".join(parts) or "waiting for the operator"


@dataclass
class DevSession:
    """One ``kaito dev up`` (see the module docstring).

    Args:
        files: Workspace (and other) YAML files or directories to apply once everything runs.
        state_dir: where the kubeconfig, the cluster's objects and ``state.json`` go.
        out: where progress lines go.
        launch_delay: seconds a local machine takes to appear.
        metrics_address: operator ``/metrics`` bind address (``127.0.0.1:0``: a free port; see ``state.json``).
        operator_args: extra operator flags.
    """

    files: Sequence[Path] = ()
    state_dir: Path = DEFAULT_STATE_DIR
    out: TextIO = sys.stdout
    launch_delay: float = LOCAL_LAUNCH_DELAY_S
    metrics_address: str = "127.0.0.1:0"
    operator_args: Sequence[str] = ()
    """Extra ``kaito-operator`` flags (after kaito dev's own, so they win), e.g. ``--no-enable-tuning-controller``."""
    cluster: Any = None
    log_file: TextIO | None = None
    """Where the components' structured logs go (default ``<state_dir>/dev.log``)."""
    operator: Any = None
    webhook: Any = None
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoint_probe: Callable[[str, str], Awaitable[tuple[bool, str]]] | None = None
    """``(namespace, service) -> (answered, message)``: whether a Workspace's endpoint answers ``GET /health``
    (default: :class:`~kaito.controllers.workspace.HTTPEndpointProber` on the LocalCluster's Service address).
    A Workspace is reported ready only when it answers: after a restart the saved ``WorkspaceSucceeded=True``
    is stale until the operator probes again, and the model takes ~30 s to load."""
    _started: float = field(default_factory=time.monotonic)
    _seen: dict[str, str] = field(default_factory=dict)
    _manager_task: asyncio.Task[None] | None = None
    _webhook_registry: Any = None
    _manager_stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the cluster, operator and webhook run and the files are applied."""

    def __post_init__(self) -> None:
        # absolute: the kubeconfig's credential paths are resolved relative to the kubeconfig file itself
        self.state_dir = Path(self.state_dir).resolve()

    def say(self, text: str) -> None:
        """Print a progress line with the seconds since start."""
        print(f"[{time.monotonic() - self._started:6.1f}s] {text}", file=self.out, flush=True)

    @property
    def kubeconfig(self) -> Path:
        """``<state_dir>/kubeconfig``."""
        return self.state_dir / "kubeconfig"

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "kubeconfig": str(self.kubeconfig.resolve()),
            "metrics_url": self.operator.manager.metrics_url if self.operator is not None else None,
            "webhook_url": self.webhook.url if self.webhook is not None else None,
            "endpoints": self.endpoints,
        }
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_dir / STATE_FILE)

    async def start(self) -> None:
        """Start the cluster, CRDs, webhook and operator, then apply the files.

        Raises:
            DevError: another session runs on ``state_dir``, or a file cannot be read or applied.
        """
        from kaito.controllers.workspace import HTTPEndpointProber
        from kaito.operator.main import attach_registry, build_operator
        from kaito.operator.options import parse_options
        from kaito.webhook.server import WebhookServer
        from kreconcile import metrics
        from kreconcile.config import load_config
        from kreconcile.testing.localcluster import LocalCluster

        other = running_session(self.state_dir)
        if other is not None:
            raise DevError(f"kaito dev is already running (pid {other['pid']}) on {self.state_dir}/: "
                           "use it, or stop it with `kaito dev down`")
        docs = load_documents(self.files)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.log_file is None:
            from kreconcile.log import configure_logging

            self.log_file = (self.state_dir / "dev.log").open("a", encoding="utf-8")
            configure_logging("console", "info", stream=self.log_file)
        self.say(f"starting the local cluster (state in {self.state_dir}/)")
        self.cluster = LocalCluster(image_map=dev_image_map(), data_dir=self.state_dir / "cluster", persist=True)
        await self.cluster.start()
        shutil.copyfile(self.cluster.kubeconfig_path, self.kubeconfig)
        self.kubeconfig.chmod(0o600)
        client = self.cluster.client
        for crd in generate_crds().values():
            await self._apply(crd)
        await self._wait_crds_established(client)
        self.say("CRDs installed: workspaces.kaito.sh, nodeclaims.karpenter.sh")

        cert_dir = self.state_dir / "webhook-certs"
        bundle = generate_bundle(["localhost"], ["127.0.0.1"])
        bundle.write(cert_dir)
        self._webhook_registry = attach_registry(metrics.REGISTRY)
        self.webhook = WebhookServer(cert_dir=cert_dir, host="127.0.0.1", port=0, registry=self._webhook_registry)
        await self.webhook.start()
        await self._apply(webhook_configurations(bundle.ca, url=self.webhook.url)[1])
        self.say(f"admission webhook serving on {self.webhook.url}")

        cluster = self.cluster

        def resolve(namespace: str, name: str, port: int) -> tuple[str, int] | None:
            try:
                return tuple(cluster.service_address(namespace, name, port))  # type: ignore[return-value]
            except LookupError:
                return None

        opts = parse_options([
            "--provider=local", f"--local-launch-delay={self.launch_delay}", "--no-webhook",
            f"--metrics-bind-address={self.metrics_address}", "--health-probe-bind-address=0",
            "--graceful-shutdown-timeout=10", *self.operator_args,
        ], {})
        prober = HTTPEndpointProber(resolve)
        if self.endpoint_probe is None:
            self.endpoint_probe = prober
        self.operator = build_operator(opts, load_config(str(self.kubeconfig)), prober=prober)
        self._manager_task = asyncio.create_task(self.operator.manager.start(self._manager_stop),
                                                 name="kaito-operator")
        await self._wait_metrics()
        self.say(f"operator running (provider local); metrics on "
                 f"{metrics_endpoint(self.operator.manager.metrics_url)}")
        self._write_state()
        for doc in docs:
            applied = await self._apply(doc)
            meta = applied.get("metadata") or {}
            where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
            self.say(f"applied {doc['kind']} {where}{meta.get('name')}")
        self.say(f"ready: kubectl --kubeconfig {self.kubeconfig} get workspace   (Ctrl-C stops everything)")
        self.ready.set()

    async def _wait_metrics(self) -> None:
        assert self.operator is not None and self._manager_task is not None
        for _ in range(600):
            if self._manager_task.done():
                self._manager_task.result()
                raise DevError("the operator stopped during start")
            url = self.operator.manager.metrics_url
            if url is None or not url.endswith(":0"):
                return
            await asyncio.sleep(0.05)

    async def _wait_crds_established(self, client: Any) -> None:
        for crd_doc in generate_crds().values():
            name = crd_doc["metadata"]["name"]
            for _ in range(200):
                crd = await client.get(CRD, name)
                if (_condition(crd, "Established") or {}).get("status") == "True":
                    break
                await asyncio.sleep(0.05)

    async def _apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        client = self.cluster.client
        gvk = GVK.from_api_version(doc["apiVersion"], doc["kind"])
        obj = json.loads(json.dumps(doc))
        try:
            mapping = await client.mapping(gvk)
        except (ApiError, LookupError) as exc:
            raise DevError(f"{doc['kind']} {doc['metadata']['name']}: the API server does not serve "
                           f"{doc['apiVersion']} {doc['kind']} ({exc})") from None
        if mapping.namespaced:
            obj["metadata"].setdefault("namespace", "default")
        try:
            return dict(await client.apply(obj, field_manager=FIELD_MANAGER, force=True))
        except ApiError as exc:
            raise DevError(f"{doc['kind']} {obj['metadata']['name']} was refused: {exc}") from None

    async def snapshot(self) -> None:
        """Print what changed since the last snapshot (Workspaces, NodeClaims, Nodes, pods) and the endpoint and
        curl of each Workspace that became ready."""
        client = self.cluster.client
        lines: dict[str, str] = {}
        workspaces = (await client.list(WORKSPACE)).get("items") or []
        for ws in workspaces:
            meta = ws["metadata"]
            lines[f"workspace {meta['namespace']}/{meta['name']}"] = describe_workspace(ws)
        for nc in (await client.list(NODECLAIM)).get("items") or []:
            conds = [f"{k}={(_condition(nc, k) or {}).get('status', 'Unknown')}" for k in ("Launched", "Registered",
                                                                                           "Ready")]
            lines[f"nodeclaim {nc['metadata']['name']}"] = (
                f"{(nc.get('spec') or {}).get('requirements', [{}])[0].get('values', [''])[0] or ''} "
                + ", ".join(conds)
            ).strip()
        for node in (await client.list(NODE)).get("items") or []:
            labels = node["metadata"].get("labels") or {}
            lines[f"node {node['metadata']['name']}"] = (
                f"{labels.get('node.kubernetes.io/instance-type', '')} "
                f"Ready={(_condition(node, 'Ready') or {}).get('status', 'Unknown')}"
            ).strip()
        for pod in (await client.list(POD)).get("items") or []:
            if c.LABEL_WORKSPACE_NAME not in (pod["metadata"].get("labels") or {}):
                continue
            lines[f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']}"] = describe_pod(pod)
        for key, text in lines.items():
            if self._seen.get(key) != text:
                self.say(f"{key}: {text}")
        for key in set(self._seen) - set(lines):
            self.say(f"{key}: deleted")
        self._seen = lines
        await self._report_endpoints(workspaces)

    async def _report_endpoints(self, workspaces: list[dict[str, Any]]) -> None:
        current: dict[str, dict[str, Any]] = {}
        for ws in workspaces:
            meta = ws["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            if (_condition(ws, "WorkspaceSucceeded") or {}).get("status") != "True":
                continue
            if ws.get("tuning") is not None:
                entry = {"output": self.tuning_output(ws)}
                current[key] = entry
                if self.endpoints.get(key) != entry:
                    self.say(f"workspace {key} finished tuning: the adapter is in {entry['output']}")
                continue
            if ws.get("inference") is None:
                continue
            try:
                address = self.cluster.service_address(meta["namespace"], meta["name"], c.SERVICE_PORT)
            except LookupError:
                continue
            model = _ws_model(ws)
            entry = {"url": f"http://{address[0]}:{address[1]}", "model": model}
            if self.endpoints.get(key) == entry:
                current[key] = entry
                continue
            # newly True: the condition may be stale (saved by the last session before the operator probed again)
            if self.endpoint_probe is not None and not (await self.endpoint_probe(meta["namespace"], meta["name"]))[0]:
                continue
            current[key] = entry
            self.say(f"workspace {key} is ready: {entry['url']}  (model {model})")
            for line in curl_commands(tuple(address), model):  # type: ignore[arg-type]
                print(f"    {line}", file=self.out, flush=True)
        if current != self.endpoints:
            self.endpoints = current
            self._write_state()

    def tuning_output(self, ws: dict[str, Any]) -> str:
        """Where a tuning Workspace's adapter went: the local directory of its output PVC under the LocalCluster
        (``<state_dir>/cluster/pvc/<namespace>/<claim>``), the image it was pushed to, or the volume's spec."""
        output = (ws.get("tuning") or {}).get("output") or {}
        if output.get("image"):
            return f"image {output['image']}"
        volume = output.get("volumeSource") or {}
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            return str(self.state_dir / "cluster" / "pvc" / ws["metadata"]["namespace"] / claim)
        return f"volume {json.dumps(volume)}"

    async def run(self, stop: asyncio.Event) -> None:
        """Start, then print progress every :data:`POLL_INTERVAL_S` until ``stop`` is set; always stops cleanly."""
        try:
            await self.start()
            while not stop.is_set():
                if self._manager_task is not None and self._manager_task.done():
                    self._manager_task.result()
                    raise DevError("the operator stopped unexpectedly")
                try:
                    await self.snapshot()
                except (ApiError, OSError) as exc:  # transient: report and keep going
                    self.say(f"progress: {type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_INTERVAL_S)
        finally:
            await self.stop()

    def _started_parts(self) -> list[str]:
        parts = [("operator", self._manager_task), ("webhook", self.webhook), ("pods, API server", self.cluster)]
        return [name for name, started in parts if started is not None]

    async def stop(self) -> None:
        """Stop what this session started (the operator, the webhook, every pod process and the API server) and
        remove its ``state.json``; says nothing when it started nothing (a refused ``kaito dev up`` leaves the
        running session alone)."""
        started = self._started_parts()
        if not started:
            return
        self.say(f"stopping: {', '.join(started)}")
        self._manager_stop.set()
        if self._manager_task is not None:
            with contextlib.suppress(Exception):
                await self._manager_task
            self._manager_task = None
        if self.webhook is not None:
            with contextlib.suppress(Exception):
                await self.webhook.stop()
            self.webhook = None
        if self._webhook_registry is not None:
            from kaito.operator.main import detach_registry
            from kreconcile import metrics

            detach_registry(metrics.REGISTRY, self._webhook_registry)
            self._webhook_registry = None
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.stop()
            self.cluster = None
        state = read_state(self.state_dir)
        if state is not None and state.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                (self.state_dir / STATE_FILE).unlink()
        self.say("stopped")


def _log_unexpected(session: DevSession, exc: Exception) -> str:
    """Append ``exc``'s traceback to the session's log (``<state_dir>/dev.log``); returns where it went."""
    text = "".join(traceback.format_exception(exc))
    if session.log_file is not None and not session.log_file.closed:
        session.log_file.write(f"kaito dev: unexpected error\n{text}")
        session.log_file.flush()
        return str(getattr(session.log_file, "name", "the log"))
    path = session.state_dir / "dev.log"
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(f"kaito dev: unexpected error\n{text}")
    except OSError:
        sys.stderr.write(text)
        return "stderr above"
    return str(path)


def run_until_signal(session: DevSession, install: Callable[[asyncio.Event], None] | None = None) -> int:
    """Run ``session`` until SIGINT/SIGTERM; returns the exit code: 1 with a one-line message on
    :class:`DevError`, and on any other error (its traceback goes to the log file, the message names it), after
    :meth:`DevSession.run` stopped what it started."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if install is not None:
            install(stop)
        try:
            await session.run(stop)
        except DevError as exc:
            print(f"kaito dev: {exc}", file=sys.stderr, flush=True)
            return 1
        except Exception as exc:  # the user gets one line; the traceback goes to the log
            where = _log_unexpected(session, exc)
            print(f"kaito dev: unexpected error: {type(exc).__name__}: {exc} (traceback in {where})",
                  file=sys.stderr, flush=True)
            return 1
        return 0

    return asyncio.run(main())


def down(state_dir: Path, *, timeout: float = 60.0, purge: bool = False, out: TextIO = sys.stdout) -> int:
    """Stop the session running on ``state_dir`` (SIGTERM, then wait up to ``timeout`` seconds for it to exit,
    SIGKILL after); with ``purge`` also delete ``state_dir`` (the cluster's objects). Returns the exit code."""
    state = running_session(state_dir)
    if state is None:
        print(f"kaito dev is not running on {state_dir}/", file=out)
    else:
        pid = int(state["pid"])
        print(f"stopping kaito dev (pid {pid})", file=out, flush=True)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            print(f"pid {pid} did not stop within {timeout:.0f} s: killing it", file=out)
            os.kill(pid, signal.SIGKILL)
        print("stopped", file=out)
    if purge and state_dir.exists():
        shutil.rmtree(state_dir)
        print(f"removed {state_dir}/", file=out)
    return 0


async def _status_lines(state: dict[str, Any]) -> list[str]:
    from kreconcile.client import Client
    from kreconcile.config import load_config

    client = Client(load_config(state["kubeconfig"]))
    try:
        lines = []
        for ws in (await client.list(WORKSPACE)).get("items") or []:
            meta = ws["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            endpoint = (state.get("endpoints") or {}).get(key, {}).get("url", "")
            lines.append(f"workspace {key}: {describe_workspace(ws)} {endpoint}".rstrip())
        return lines or ["no workspaces"]
    finally:
        await client.close()


def status(state_dir: Path, out: TextIO = sys.stdout) -> int:
    """Print whether a session runs on ``state_dir``, its kubeconfig, metrics URL and Workspaces; returns 0 when
    running, 3 when not (like ``systemctl status``)."""
    state = running_session(state_dir)
    if state is None:
        print(f"kaito dev is not running on {state_dir}/ (start it with `kaito dev up FILE...`)", file=out)
        return 3
    print(f"kaito dev is running (pid {state['pid']})", file=out)
    print(f"  kubeconfig: {state['kubeconfig']}", file=out)
    print(f"  operator metrics: {metrics_endpoint(state.get('metrics_url'))}", file=out)
    try:
        for line in asyncio.run(_status_lines(state)):
            print(f"  {line}", file=out)
    except (ApiError, OSError, NotFound) as exc:
        print(f"  cannot list workspaces: {exc}", file=out)
    return 0
