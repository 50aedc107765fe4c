"""One pod on the process kubelet: volumes, init containers in order, then containers, each supervised.

Per container the lifecycle is the kubelet's:

* image lookup in the :class:`~kreconcile.testing.kubelet.images.ImageMap`; unknown → ``waiting: ErrImagePull``
  for 1 s, then ``ImagePullBackOff`` (``Back-off pulling image "x"``) for 10 s doubling to 300 s, then retry;
* config (env ``valueFrom``): a missing Secret/ConfigMap → ``waiting: CreateContainerConfigError``, retried every
  second; volumes: a missing Secret/ConfigMap → a ``FailedMount`` Event, retried with the volume manager's back-off
  (0.5 s doubling to 2m2s, :class:`~kreconcile.testing.kubelet.backoff.RetryBackoff`; the recorder aggregates the
  repeats into one Event's series);
* ``running`` with probes: startup gates liveness and readiness; readiness sets ``ready``; a liveness or startup
  failure past ``failureThreshold`` kills the container (``preStop`` hook, SIGTERM, SIGKILL after the grace period);
  ``lifecycle.preStop`` (exec or httpGet) also runs before a stop, bounded by the grace period; ``postStart`` is
  not run;
* ``terminated`` with the exit code (signal N → 128+N), reason ``Completed``/``Error``/``OOMKilled``
  (resident memory of the container's process group above ``resources.limits.memory``)/``StartError``, and a
  ``message`` from ``terminationMessagePath`` (rewritten to a local file, like mounts) or, with
  ``terminationMessagePolicy: FallbackToLogsOnError``, the log's tail;
* restart by ``restartPolicy`` (init containers: on failure unless ``Never``) with CrashLoopBackOff: restart at
  once after the first failure, then ``waiting: CrashLoopBackOff`` for 10 s, 20 s, ... 300 s
  (``back-off 20s restarting failed container=app pod=web-0_default(uid)``).

``spec.activeDeadlineSeconds`` (from the worker's start) stops every container and fails the pod with reason
``DeadlineExceeded``; ``hostNetwork`` pods keep their declared ports (no remapping).

Time (back-offs, probe periods, grace periods, deadlines) runs on the injectable clock; probe timeouts and memory
sampling use real time because they measure real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from kreconcile.clock import Clock
from kreconcile.testing.kubelet.backoff import MAX_BACKOFF_S, Backoff, RetryBackoff, go_duration
from kreconcile.testing.kubelet.env import build_env, expand_all, pod_field
from kreconcile.testing.kubelet.images import ImageMap, LaunchContext, LaunchSpec, resolve_argv
from kreconcile.testing.kubelet.ports import declared_ports, free_port, port_env, rewrite_argv
from kreconcile.testing.kubelet.probes import ProbeConfig, ProbeState, run_probe
from kreconcile.testing.kubelet.process import ContainerProcess, exit_code, group_rss_bytes
from kreconcile.testing.kubelet.quantity import memory_limit_bytes
from kreconcile.testing.kubelet.status import ContainerRecord, pod_conditions, pod_phase, qos_class, rfc3339
from kreconcile.testing.kubelet.volumes import (
    ContainerConfigError,
    ObjectGetter,
    PathMap,
    VolumeDirs,
    mount_map,
    prepare_volumes,
)

log = structlog.get_logger("kreconcile.testing.kubelet")

DEFAULT_GRACE_S = 30.0
"""``terminationGracePeriodSeconds`` when the pod does not set it (the API default)."""
CONFIG_RETRY_S = 1.0
"""Seconds between retries of a container whose Secret/ConfigMap is missing."""
ERR_IMAGE_PULL_S = 1.0
"""Seconds a failed pull shows ``ErrImagePull`` before ``ImagePullBackOff``."""

TERMINATION_PATH = "/dev/termination-log"
"""``terminationMessagePath`` default; like every mount path it is rewritten to a per-container local file."""

INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "XDG_CACHE_HOME",
)
"""Variables of the kubelet's own environment that containers inherit (so mapped local commands still work)."""

EventSink = Callable[[Mapping[str, Any], str, str, str], None]
"""``sink(pod, type, reason, message)``: type ``Normal``/``Warning``, reason CamelCase (``BackOff``)."""


def _no_events(_pod: Mapping[str, Any], _type: str, _reason: str, _message: str) -> None:
    return None


@dataclass
class NodeContext:
    """What every pod on a node shares: the image map, clock, directories and API callbacks.

    Attributes:
        node_name: the Node's name (``spec.nodeName`` of its pods).
        image_map: image → local command (see :mod:`~kreconcile.testing.kubelet.images`).
        clock: time for back-offs, probe periods and grace periods.
        data_dir: root for pod, node and PVC directories.
        get_secret / get_config_map: ``await get(namespace, name)`` → object or None.
        on_change: called (synchronously) whenever a pod's status may have changed.
        on_event: records Kubernetes events (``Pulled``, ``Started``, ``BackOff``, ``Unhealthy``, ``Killing``).
        base_env: the environment every container starts from (default: :data:`INHERITED_ENV` of this process).
        memory_poll_s: seconds between memory samples of containers with a memory limit (real time).
    """

    node_name: str
    image_map: ImageMap
    clock: Clock
    data_dir: Path
    get_secret: ObjectGetter
    get_config_map: ObjectGetter
    on_change: Callable[[PodWorker], None]
    on_event: EventSink = _no_events
    base_env: Mapping[str, str] = field(
        default_factory=lambda: {k: v for k, v in os.environ.items() if k in INHERITED_ENV}
    )
    memory_poll_s: float = 0.5

    @property
    def node_dir(self) -> Path:
        return self.data_dir / "nodes" / self.node_name


class PodWorker:
    """Runs one pod until it completes or :meth:`stop` is called. Status via :meth:`status`.

    Create with the pod dict as bound to this node; :meth:`start` launches it in the background.
    """

    def __init__(self, pod: Mapping[str, Any], ctx: NodeContext) -> None:
        self.pod: dict[str, Any] = copy.deepcopy(dict(pod))
        self.ctx = ctx
        meta = self.pod.get("metadata") or {}
        self.uid: str = meta.get("uid") or f"{meta.get('namespace', 'default')}-{meta.get('name', '')}"
        self.namespace: str = meta.get("namespace", "default")
        self.name: str = meta.get("name", "")
        spec = self.pod.get("spec") or {}
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.pod_dir = ctx.data_dir / "pods" / self.uid
        self._init_specs: list[dict[str, Any]] = list(spec.get("initContainers") or [])
        self._specs: list[dict[str, Any]] = list(spec.get("containers") or [])
        first_wait = "PodInitializing" if self._init_specs else "ContainerCreating"
        self.init_records = [
            ContainerRecord(c["name"], c.get("image", ""), {"waiting": {"reason": "PodInitializing"}})
            for c in self._init_specs
        ]
        self.records = [
            ContainerRecord(c["name"], c.get("image", ""), {"waiting": {"reason": first_wait}}) for c in self._specs
        ]
        self.start_time = rfc3339(ctx.clock.wall())
        self.ports: dict[str, dict[int, int]] = {}
        self._procs: dict[str, ContainerProcess] = {}
        self._launches: dict[str, LaunchSpec] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        """Set when the pod will start no more processes (completed, failed or stopped)."""
        self.failure: tuple[str, str] | None = None
        """``(reason, message)`` when the kubelet failed the pod itself (``DeadlineExceeded``)."""
        self._deadline_task: asyncio.Task[None] | None = None
        self._log = log.bind(namespace=self.namespace, name=self.name, node=ctx.node_name)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start running the pod in a background task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"pod:{self.namespace}/{self.name}")

    @property
    def grace_seconds(self) -> float:
        """``spec.terminationGracePeriodSeconds`` (default 30)."""
        value = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE_S if value is None else float(value)

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop every container (SIGTERM, SIGKILL after ``grace_seconds``, default the pod's) and wait for them."""
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        self._stopping.set()
        self._deadline_task_cancel()
        procs = list(self._procs.items())
        if procs:
            for name, _ in procs:
                self._event("Normal", "Killing", f"Stopping container {name}")
            await asyncio.gather(*(self._pre_stop(name, grace) for name, _ in procs))
            await asyncio.gather(*(p.terminate(grace, self.ctx.clock.sleep) for _, p in procs))
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        for proc in list(self._procs.values()):
            await proc.terminate(0, self.ctx.clock.sleep)
        self.done.set()

    async def _pre_stop(self, name: str, grace: float) -> None:
        """Run the container's ``lifecycle.preStop`` hook (exec or httpGet), bounded by the grace period."""
        spec = next((c for c in [*self._specs, *self._init_specs] if c["name"] == name), None)
        hook = ((spec or {}).get("lifecycle") or {}).get("preStop")
        launch = self._launches.get(name)
        if not hook or spec is None or launch is None or grace <= 0:
            return
        handler = dict(hook)
        handler["timeoutSeconds"] = grace
        if "exec" in handler:
            handler["exec"] = {"command": _rewrite_exec(handler["exec"].get("command") or [], launch)}
        result = await run_probe(handler, spec, self.ports.get(name, {}), launch)
        if not result.ok:
            self._event("Warning", "FailedPreStopHook", f"PreStopHook failed: {result.message}")

    def update_pod(self, pod: Mapping[str, Any]) -> None:
        """Take a newer copy of the pod (labels, annotations, deletion fields); the spec is immutable."""
        self.pod = copy.deepcopy(dict(pod))

    # ---------------------------------------------------------------- status

    def status(self, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``PodStatus`` dict now; ``previous`` (the stored status) keeps condition transition times."""
        previous = previous or {}
        phase = "Failed" if self.failure else pod_phase(self.restart_policy, self.init_records, self.records)
        now = rfc3339(self.ctx.clock.wall())
        conditions = pod_conditions(phase, self.init_records, self.records, previous.get("conditions") or [], now)
        out: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "containerStatuses": [r.to_status() for r in self.records],
            "qosClass": qos_class(self.pod),
        }
        if self.init_records:
            out["initContainerStatuses"] = [r.to_status() for r in self.init_records]
        if self.failure:
            out["reason"], out["message"] = self.failure
        return out

    def log_path(self, container: str, attempt: int) -> Path:
        """The log file of ``container``'s ``attempt``-th run (its restartCount at the time)."""
        return self.pod_dir / "logs" / container / f"{attempt}.log"

    def read_log(
        self, container: str | None = None, previous: bool = False, tail_lines: int | None = None,
        limit_bytes: int | None = None,
    ) -> bytes:
        """The container's output, as ``kubectl logs`` shows it.

        Args:
            container: the container name; may be omitted when the pod has exactly one container.
            previous: the run before the current one (``--previous``).
            tail_lines: only the last N lines. limit_bytes: at most this many bytes from the start.

        Raises:
            LookupError: unknown container, ambiguous omission, or no such run (message as the API server's).
        """
        records = {r.name: r for r in [*self.init_records, *self.records]}
        if container is None:
            if len(self.records) != 1:
                names = " ".join(r.name for r in self.records)
                raise LookupError(
                    f"a container name must be specified for pod {self.name}, choose one of: [{names}]"
                )
            container = self.records[0].name
        record = records.get(container)
        if record is None:
            raise LookupError(f"container {container} is not valid for pod {self.name}")
        attempt = record.restart_count - 1 if previous else record.restart_count
        path = self.log_path(container, attempt)
        if attempt < 0 or not path.exists():
            if previous:
                raise LookupError(f'previous terminated container "{container}" in pod "{self.name}" not found')
            if "waiting" in record.state:
                reason = record.state["waiting"].get("reason", "ContainerCreating")
                raise LookupError(f'container "{container}" in pod "{self.name}" is waiting to start: {reason}')
            return b""
        data = path.read_bytes()
        if tail_lines is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
        if limit_bytes is not None:
            data = data[:limit_bytes]
        return data

    # ---------------------------------------------------------------- internals

    def _changed(self) -> None:
        try:
            self.ctx.on_change(self)
        except Exception:  # a status sink must not break the pod
            self._log.exception("kubelet_status_callback_failed")

    def _event(self, etype: str, reason: str, message: str) -> None:
        try:
            self.ctx.on_event(self.pod, etype, reason, message)
        except Exception:
            self._log.exception("kubelet_event_callback_failed")

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep ``seconds`` on the clock; False if the pod is being stopped (at once or during the sleep)."""
        if self._stopping.is_set():
            return False
        sleeper = asyncio.ensure_future(self.ctx.clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        return not self._stopping.is_set()

    def _field(self, path: str) -> str:
        return pod_field(self.pod, path)

    def _deadline_task_cancel(self) -> None:
        if self._deadline_task is not None and self._deadline_task is not asyncio.current_task():
            self._deadline_task.cancel()

    async def _enforce_deadline(self, seconds: float) -> None:
        """``spec.activeDeadlineSeconds``: past it, stop every container and fail the pod (``DeadlineExceeded``)."""
        if not await self._sleep_or_stop(seconds):
            return
        self.failure = ("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
        self._event("Normal", "DeadlineExceeded", self.failure[1])
        await self.stop()

    async def _run(self) -> None:
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is not None:
            self._deadline_task = asyncio.create_task(self._enforce_deadline(float(deadline)))
        try:
            volumes = await self._prepare_volumes()
            if volumes is None:
                return
            for i, spec in enumerate(self._init_specs):
                if not await self._supervise(spec, i, self.init_records[i], volumes, init=True):
                    return
            for record in self.records:
                if record.state.get("waiting", {}).get("reason") == "PodInitializing":
                    record.state = {"waiting": {"reason": "ContainerCreating"}}
            self._changed()
            await asyncio.gather(
                *(self._supervise(spec, i, self.records[i], volumes, init=False) for i, spec in enumerate(self._specs))
            )
            self._deadline_task_cancel()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("kubelet_pod_worker_failed")
        finally:
            self.done.set()
            self._changed()

    async def _prepare_volumes(self) -> VolumeDirs | None:
        (self.pod_dir / "rootfs").mkdir(parents=True, exist_ok=True)
        backoff = RetryBackoff()
        while True:
            try:
                return await prepare_volumes(
                    self.pod, self.pod_dir, self.ctx.node_dir, self.ctx.data_dir,
                    self.ctx.get_secret, self.ctx.get_config_map, self._field,
                )
            except ContainerConfigError as exc:
                self._event("Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
                if not await self._sleep_or_stop(backoff.next()):
                    return None

    def _ports_for(self, container: Mapping[str, Any]) -> dict[int, int]:
        name = container["name"]
        if name not in self.ports:
            host_network = bool((self.pod.get("spec") or {}).get("hostNetwork"))
            self.ports[name] = {
                number: number if host_network else free_port() for _, number in declared_ports(container)
            }
        return self.ports[name]

    async def _build_launch(
        self, container: Mapping[str, Any], index: int, volumes: VolumeDirs, init: bool
    ) -> LaunchSpec:
        image = self.ctx.image_map.lookup(container.get("image", ""))
        assert image is not None
        kind = "initContainers" if init else "containers"
        env_vars = await build_env(self.pod, container, self.ctx.get_secret, self.ctx.get_config_map)
        paths = mount_map(container, volumes, index, kind)
        message_file = str(self._termination_file(container["name"], clear=True))
        paths = PathMap({**paths.mounts, container.get("terminationMessagePath") or TERMINATION_PATH: message_file})
        ports = self._ports_for(container)
        argv = resolve_argv(
            image, expand_all(container.get("command"), env_vars), expand_all(container.get("args"), env_vars)
        )
        argv = tuple(rewrite_argv([paths.rewrite(a) for a in argv], ports))
        env = {**self.ctx.base_env, **image.env}
        env["HOSTNAME"] = (self.pod.get("spec") or {}).get("hostname") or self.name
        env.update({k: paths.rewrite(v) for k, v in env_vars.items()})
        env = port_env(env, ports)
        env["KRECONCILE_PATH_MAP"] = paths.to_json()
        env["KRECONCILE_POD_DIR"] = str(self.pod_dir)
        working_dir = container.get("workingDir")
        if working_dir:
            cwd = paths.rewrite(working_dir)
            if cwd == working_dir:  # not under a mount: the container's own filesystem
                cwd = str(self.pod_dir / "rootfs" / working_dir.lstrip("/"))
        else:
            cwd = image.working_dir or str(self.pod_dir / "rootfs")
        _mkdir(cwd)
        launch = LaunchSpec(argv=argv, env=env, cwd=cwd)
        if image.transform is not None:
            ctx = LaunchContext(self.pod, container, ports, dict(paths.mounts), self.pod_dir)
            launch = image.transform(launch, ctx)
        return launch

    async def _supervise(
        self, container: Mapping[str, Any], index: int, record: ContainerRecord, volumes: VolumeDirs, init: bool
    ) -> bool:
        """Run one container to its end by the restart policy; True when it (finally) exited 0."""
        clock = self.ctx.clock
        name = container["name"]
        image_name = container.get("image", "")
        crash_backoff = Backoff()
        pull_failures = 0
        runs = 0
        while not self._stopping.is_set():
            if self.ctx.image_map.lookup(image_name) is None:
                message = (
                    f'Failed to pull image "{image_name}": image is not in the LocalCluster image map; '
                    f'register it with ImageMap.register("{image_name}", ...)'
                )
                record.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
                self._event("Warning", "Failed", message)
                self._changed()
                if not await self._sleep_or_stop(ERR_IMAGE_PULL_S):
                    return False
                delay = min(10.0 * 2**pull_failures, MAX_BACKOFF_S)
                pull_failures += 1
                record.state = {
                    "waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image_name}"'}
                }
                self._event("Normal", "BackOff", f'Back-off pulling image "{image_name}"')
                self._changed()
                if not await self._sleep_or_stop(delay):
                    return False
                continue
            try:
                launch = await self._build_launch(container, index, volumes, init)
            except (ContainerConfigError, ValueError) as exc:
                record.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                self._event("Warning", "Failed", f"Error: {exc}")
                self._changed()
                if not await self._sleep_or_stop(CONFIG_RETRY_S):
                    return False
                continue
            if runs:
                record.restart_count += 1
            runs += 1
            code = await self._run_once(container, record, launch)
            if self._stopping.is_set():
                return code == 0
            if init:
                if code == 0:
                    return True
                if self.restart_policy == "Never":
                    return False
            elif not (self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)):
                return code == 0
            delay = crash_backoff.next(clock.now())
            record.last_state = {"terminated": record.state["terminated"]}
            if delay > 0:
                message = (
                    f"back-off {go_duration(delay)} restarting failed container={name} "
                    f"pod={self.name}_{self.namespace}({self.uid})"
                )
                record.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
                self._event("Warning", "BackOff", "Back-off restarting failed container " + name)
                self._changed()
                if not await self._sleep_or_stop(delay):
                    return False
        return False

    async def _run_once(self, container: Mapping[str, Any], record: ContainerRecord, launch: LaunchSpec) -> int:
        """Start the process, watch it (probes, memory), record its termination; returns the exit code."""
        clock = self.ctx.clock
        name = container["name"]
        started_at = rfc3339(clock.wall())
        try:
            proc = await ContainerProcess.start(
                launch.argv, launch.env, launch.cwd, self.log_path(name, record.restart_count)
            )
        except OSError as exc:
            message = f"failed to start container {name!r}: {exc}"
            record.state = {
                "terminated": {
                    "exitCode": 128, "reason": "StartError", "message": message,
                    "startedAt": started_at, "finishedAt": rfc3339(clock.wall()),
                }
            }
            record.ready = record.started = False
            self._event("Warning", "Failed", f"Error: {message}")
            self._changed()
            return 128
        self._procs[name] = proc
        self._launches[name] = launch
        record.container_id = f"process://{proc.pid}"
        record.state = {"running": {"startedAt": started_at}}
        has_startup = "startupProbe" in container
        record.started = not has_startup
        record.ready = record.started and "readinessProbe" not in container
        self._event("Normal", "Started", f"Started container {name}")
        self._changed()
        started = asyncio.Event()
        if record.started:
            started.set()
        oom = asyncio.Event()
        watchers = []
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in container:
                watchers.append(asyncio.create_task(self._probe_loop(kind, container, record, launch, proc, started)))
        limit = memory_limit_bytes(container)
        if limit is not None:
            watchers.append(asyncio.create_task(self._memory_watch(proc, limit, oom)))
        try:
            raw = await proc.wait()
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._procs.pop(name, None)
        code = exit_code(raw)
        reason = "OOMKilled" if oom.is_set() else ("Completed" if code == 0 else "Error")
        record.state = {
            "terminated": {
                "exitCode": code, "reason": reason, "startedAt": started_at,
                "finishedAt": rfc3339(clock.wall()), "containerID": record.container_id,
            }
        }
        if raw < 0:
            record.state["terminated"]["signal"] = -raw
        message = self._termination_message(container, record, code)
        if message:
            record.state["terminated"]["message"] = message
        record.ready = record.started = False
        self._changed()
        return code

    def _termination_file(self, container: str, clear: bool = False) -> Path:
        path = self.pod_dir / "termination" / container
        if clear:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
        return path

    def _termination_message(self, container: Mapping[str, Any], record: ContainerRecord, code: int) -> str:
        """The file at ``terminationMessagePath`` (at most 4096 bytes), or with ``FallbackToLogsOnError`` and a
        failure, the last 80 lines (at most 2048 bytes) of the log (the kubelet's rules)."""
        path = self._termination_file(container["name"])
        try:
            data = path.read_bytes()[:4096]
        except OSError:
            data = b""
        if not data and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                log_data = self.log_path(container["name"], record.restart_count).read_bytes()
            except OSError:
                log_data = b""
            data = b"".join(log_data.splitlines(keepends=True)[-80:])[-2048:]
        return data.decode(errors="replace")

    async def _memory_watch(self, proc: ContainerProcess, limit: int, oom: asyncio.Event) -> None:
        while proc.returncode is None:
            if group_rss_bytes(proc.pid) > limit:
                oom.set()
                self._event("Warning", "OOMKilling", f"Memory cgroup out of memory: killed process {proc.pid}")
                proc.signal_group(signal.SIGKILL)
                return
            await asyncio.sleep(self.ctx.memory_poll_s)

    async def _probe_loop(
        self,
        kind: str,
        container: Mapping[str, Any],
        record: ContainerRecord,
        launch: LaunchSpec,
        proc: ContainerProcess,
        started: asyncio.Event,
    ) -> None:
        probe = dict(container[kind])
        config = ProbeConfig.of(probe)
        label = {"startupProbe": "Startup", "livenessProbe": "Liveness", "readinessProbe": "Readiness"}[kind]
        if "exec" in probe:
            probe["exec"] = {"command": _rewrite_exec(probe["exec"].get("command") or [], launch)}
        if kind != "startupProbe":
            await started.wait()
        await self.ctx.clock.sleep(config.initial_delay)
        state = ProbeState(config, initial=kind == "livenessProbe")
        ports = self.ports.get(container["name"], {})
        while proc.returncode is None:
            result = await run_probe(probe, container, ports, launch)
            changed = state.record(result.ok)
            if not result.ok:
                self._event("Warning", "Unhealthy", f"{label} probe failed: {result.message}")
            if kind == "readinessProbe" and changed:
                record.ready = state.result
                self._changed()
            elif kind == "startupProbe" and state.result:
                record.started = True
                record.ready = "readinessProbe" not in container
                started.set()
                self._changed()
                return
            if kind != "readinessProbe" and state.failures >= config.failure_threshold:
                self._event(
                    "Normal", "Killing",
                    f"Container {container['name']} failed {label.lower()} probe, will be restarted",
                )
                await self._pre_stop(container["name"], self.grace_seconds)
                await proc.terminate(self.grace_seconds, self.ctx.clock.sleep)
                return
            await self.ctx.clock.sleep(config.period)


def _mkdir(path: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)


def _rewrite_exec(command: Sequence[str], launch: LaunchSpec) -> list[str]:
    """An exec probe's command with mount paths rewritten like the container's own (via KRECONCILE_PATH_MAP)."""
    paths = PathMap(json.loads(launch.env.get("KRECONCILE_PATH_MAP", "{}")))
    return [paths.rewrite(str(c)) for c in command]
