"""``LocalCluster``: an API server plus the parts of a cluster that turn workloads into running local processes.

``backend="emulator"`` (default): our :class:`~kreconcile.testing.apiserver.APIServer` (which itself does
ownerReference garbage collection and namespace deletion) plus, in one kreconcile
:class:`~kreconcile.manager.Manager`, the controllers of :mod:`kreconcile.testing.controllers`: Deployment,
StatefulSet, Job, endpoints, the scheduler, and on every cluster the node-side parts — a
:class:`~kreconcile.testing.kubelet.ProcessKubelet` per Node, node Lease heartbeats and the Service proxy.

``backend="real"``: a real kube-apiserver, kube-controller-manager and kube-scheduler
(:class:`~kreconcile.testing.realserver.RealAPIServer`, from ``hack/real-apiserver.sh``) do the control-plane work;
LocalCluster adds only the node side (kubelets, leases, Service proxy). ``kubectl logs`` needs a kubelet HTTPS
endpoint the real server can call, which the process kubelet does not serve: use :meth:`LocalCluster.read_log`.

Every Node of the cluster is local: when a Node appears (created with :meth:`LocalCluster.add_node` or by anyone
else, e.g. kaito's local provider), a kubelet starts serving it and fills in a missing ``Ready`` status, as a kubelet
registering itself would; when the Node is deleted its pods' processes are stopped.

Example::

    async with LocalCluster(image_map=images, data_dir=tmp) as cluster:
        await cluster.add_node("node-1", capacity={"nvidia.com/gpu": "2"})
        # kubectl --kubeconfig cluster.kubeconfig_path apply -f deploy.yaml
        host, port = await cluster.wait_service_address("default", "web", 80)
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import structlog

from kreconcile.builder import Builder
from kreconcile.client import Client
from kreconcile.clock import Clock, RealClock
from kreconcile.config import load_config
from kreconcile.errors import Conflict, NotFound
from kreconcile.manager import Manager
from kreconcile.predicates import Funcs
from kreconcile.reconcile import Request, Result
from kreconcile.testing.controllers._common import NODE, POD, with_kind
from kreconcile.testing.controllers.deployment import setup_deployment_controller
from kreconcile.testing.controllers.endpoints import setup_endpoints_controller
from kreconcile.testing.controllers.job import JOB_BACKOFF_BASE_S, setup_job_controller
from kreconcile.testing.controllers.node import (
    ClientKubeletBackend,
    NodeHeartbeat,
    node_object,
    register_node,
    setup_kubelet_controller,
)
from kreconcile.testing.controllers.scheduling import setup_scheduler
from kreconcile.testing.controllers.serviceproxy import ServiceProxy, setup_service_proxy
from kreconcile.testing.controllers.statefulset import setup_statefulset_controller
from kreconcile.testing.kubelet import ImageMap, ProcessKubelet
from kreconcile.testing.kubelet.nodeinfo import KUBELET_VERSION, node_info

log = structlog.get_logger("kreconcile.testing.localcluster")

Backend = Literal["emulator", "real"]

GPU_RESOURCE = "nvidia.com/gpu"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
"""GPU feature discovery's label; a Node registered without ``nvidia.com/gpu`` capacity gets that many (as the
device plugin would advertise them)."""

SHUTDOWN_GRACE_S = 5.0
"""Seconds containers get between SIGTERM and SIGKILL when the cluster stops (capped by each pod's own grace)."""


class LocalCluster:
    """A cluster on this machine whose pods are local processes (see module docstring).

    Args:
        backend: ``"emulator"`` (default) or ``"real"``.
        image_map: image → local command; default :meth:`ImageMap.with_defaults` (python, busybox, ...).
        data_dir: where pod sandboxes, logs, volumes and PVCs go; a temporary directory (removed on stop) if None.
        kubelet_clock: clock of the kubelets' back-offs, probe periods and grace periods (tests pass a FakeClock).
        job_backoff_base_s: first pod-failure back-off of Jobs (10 s upstream; tests lower it). Emulator only.
        persist: keep the emulator's objects (and its kubeconfig and PKI) in ``<data_dir>/apiserver`` so a new
            LocalCluster on the same ``data_dir`` resumes them (pods restart as processes); needs ``data_dir``.
        server_kwargs: extra arguments for the API server (``APIServer`` or ``RealAPIServer``).

    Raises:
        ValueError: unknown ``backend``, or ``persist`` without ``data_dir``.
    """

    def __init__(
        self,
        backend: Backend = "emulator",
        image_map: ImageMap | None = None,
        data_dir: str | Path | None = None,
        *,
        kubelet_clock: Clock | None = None,
        job_backoff_base_s: float = JOB_BACKOFF_BASE_S,
        persist: bool = False,
        server_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if backend not in ("emulator", "real"):
            raise ValueError(f"LocalCluster backend={backend!r}: use 'emulator' (default) or 'real'")
        if persist and data_dir is None:
            raise ValueError("LocalCluster(persist=True) needs data_dir= (where the objects are kept)")
        self.persist = persist
        self.backend: Backend = backend
        self.image_map = image_map if image_map is not None else ImageMap.with_defaults()
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir = self._given_data_dir or Path()
        self.kubelet_clock = kubelet_clock or RealClock()
        self.job_backoff_base_s = job_backoff_base_s
        self._server_kwargs = dict(server_kwargs or {})
        self.server: Any = None
        self.client: Client | None = None
        self.manager: Manager | None = None
        self.kubelets: dict[str, ProcessKubelet] = {}
        self._kubelet_routes: dict[str, dict[str, ProcessKubelet]] = {}
        self._heartbeat_stops: dict[str, asyncio.Event] = {}
        self._heartbeat_tasks: dict[str, asyncio.Task[None]] = {}
        self.proxy = ServiceProxy(self._local_port)
        self._stop = asyncio.Event()
        self._manager_task: asyncio.Task[None] | None = None
        self._tmp: str | None = None
        self._backend_obj: ClientKubeletBackend | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def kubeconfig_path(self) -> Path:
        """The kubeconfig for kubectl and clients (valid after start)."""
        if self.server is None:
            raise RuntimeError("LocalCluster is not started: use `async with LocalCluster(...) as cluster:`")
        return Path(self.server.kubeconfig_path)

    async def start(self) -> LocalCluster:
        """Start the API server and the manager with every controller; returns when the caches have synced."""
        if self._given_data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="localcluster-")
            self.data_dir = Path(self._tmp)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        if self.backend == "emulator":
            from kreconcile.testing.apiserver import APIServer

            kwargs = dict(self._server_kwargs)
            if self.persist:
                kwargs.setdefault("data_dir", self.data_dir / "apiserver")
            self.server = APIServer(**kwargs)
            await self.server.start()
            self.server.set_pod_log_provider(self._log_provider)
        else:
            from kreconcile.testing.realserver import RealAPIServer

            real_kwargs: dict[str, Any] = {"scheduler": True, **self._server_kwargs}
            if self.persist:
                real_kwargs.setdefault("state_dir", self.data_dir / "apiserver")
            self.server = RealAPIServer(**real_kwargs)
            await self.server.start()
        config = load_config(str(self.server.kubeconfig_path))
        self.client = Client(config.with_rate(0))
        manager = Manager(self.client, metrics_bind_address="0", health_probe_bind_address="0",
                          graceful_shutdown_timeout=10.0)
        self.manager = manager
        cache = manager.cache
        recorder = manager.event_recorder("localcluster")
        self._backend_obj = ClientKubeletBackend(self.client, cache, recorder)
        if self.backend == "emulator":
            setup_deployment_controller(manager, self.client, cache)
            setup_statefulset_controller(manager, self.client, cache)
            setup_job_controller(manager, self.client, cache, backoff_base_s=self.job_backoff_base_s)
            setup_endpoints_controller(manager, self.client, cache)
            setup_scheduler(manager, self.client, cache, manager.event_recorder("default-scheduler"))
        setup_service_proxy(manager, cache, self.proxy, self.client)
        (
            Builder(manager)
            .named("localcluster-nodes")
            .for_(NODE, namespaced=False, predicates=[Funcs(update=lambda _o, n: bool(_not_ready_taints(n)))])
            .with_options(needs_leader_election=False, skip_name_validation=True)
            .complete(self._reconcile_node)
        )
        self._manager_task = asyncio.create_task(manager.start(self._stop), name="localcluster-manager")
        synced = asyncio.create_task(manager.cache.wait_for_cache_sync(timeout=60))
        done, _ = await asyncio.wait({synced, self._manager_task}, return_when=asyncio.FIRST_COMPLETED)
        if self._manager_task in done:
            synced.cancel()
            self._manager_task.result()
            raise RuntimeError("LocalCluster manager stopped during start")
        if not synced.result():
            raise TimeoutError("LocalCluster: the informer caches did not sync within 60 s; is the API server up?")

    async def stop(self) -> None:
        """Stop every container (SIGTERM, SIGKILL after at most 5 s), the controllers, the server; remove temp dirs."""
        for kubelet in list(self.kubelets.values()):
            with contextlib.suppress(Exception):
                await kubelet.shutdown(grace_seconds=SHUTDOWN_GRACE_S)
        for stop in self._heartbeat_stops.values():
            stop.set()
        for task in self._heartbeat_tasks.values():
            with contextlib.suppress(Exception):
                await task
        self._stop.set()
        if self._manager_task is not None:
            with contextlib.suppress(Exception):
                await self._manager_task
            self._manager_task = None
        await self.proxy.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def __aenter__(self) -> LocalCluster:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ nodes

    async def add_node(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        capacity: Mapping[str, str] | None = None,
        taints: list[dict[str, Any]] | None = None,
        instance_type: str | None = None,
    ) -> dict[str, Any]:
        """Register a Ready Node (see :func:`~kreconcile.testing.controllers.node.node_object` for defaults) and
        serve it with a local kubelet at once. Returns the stored Node."""
        client = self._require_client()
        node = await register_node(
            client, node_object(name, labels, capacity, taints, self.kubelet_clock.wall(), instance_type)
        )
        self._serve(name)
        return node

    def kubelet(self, node: str) -> ProcessKubelet:
        """The kubelet serving ``node``.

        Raises:
            KeyError: no local kubelet serves that node (it does not exist or was deleted).
        """
        return self.kubelets[node]

    def _serve(self, name: str) -> ProcessKubelet:
        kubelet = self.kubelets.get(name)
        if kubelet is not None:
            return kubelet
        assert self._backend_obj is not None
        kubelet = ProcessKubelet(name, self._backend_obj, self.image_map, self.data_dir, clock=self.kubelet_clock)
        self.kubelets[name] = kubelet
        routes = self._kubelet_routes.get(name)
        if routes is None:  # one kubelet controller per Node, kept (and reused) for the cluster's life
            assert self.manager is not None
            routes = self._kubelet_routes[name] = {}
            setup_kubelet_controller(self.manager, self.manager.cache, routes, name=f"localcluster-kubelet-{name}")
        routes[name] = kubelet
        stop = asyncio.Event()
        self._heartbeat_stops[name] = stop
        self._heartbeat_tasks[name] = asyncio.create_task(
            NodeHeartbeat(self._require_client(), name, RealClock()).start(stop), name=f"lease:{name}"
        )
        log.info("localcluster_node_served", node=name)
        return kubelet

    async def _reconcile_node(self, request: Request) -> Result:
        assert self.manager is not None
        try:
            node = await self.manager.cache.get(NODE, request.name)
        except NotFound:
            kubelet = self.kubelets.pop(request.name, None)
            self._kubelet_routes.get(request.name, {}).pop(request.name, None)
            stop = self._heartbeat_stops.pop(request.name, None)
            if stop is not None:
                stop.set()
            self._heartbeat_tasks.pop(request.name, None)
            if kubelet is not None:
                await kubelet.shutdown(grace_seconds=SHUTDOWN_GRACE_S)
            await self._delete_orphaned_pods(request.name)
            return Result()
        new = request.name not in self.kubelets
        self._serve(request.name)
        conditions = (node.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" for c in conditions):
            await self._report_ready(node)
        elif ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion") != KUBELET_VERSION:
            await self._report_node_info(node)
        elif _not_ready_taints(node):
            await self._untaint(node)
        if new:
            for pod in await self.manager.cache.list(POD):
                if (pod.get("spec") or {}).get("nodeName") == request.name:
                    await self.kubelets[request.name].sync_pod(pod)
        return Result()

    async def _untaint(self, node: dict[str, Any]) -> None:
        """Remove the ``node.kubernetes.io/not-ready`` taint from a Ready Node, as the node lifecycle controller
        does (a real kube-apiserver's ``TaintNodesByCondition`` admission adds it to every new Node)."""
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != NOT_READY_TAINT]
        patch = {"metadata": {"resourceVersion": node["metadata"].get("resourceVersion")}, "spec": {"taints": taints}}
        with contextlib.suppress(NotFound, Conflict):  # Conflict: changed meanwhile; its update event retries
            await self._require_client().patch(with_kind(node, NODE), patch)

    async def _delete_orphaned_pods(self, node_name: str) -> None:
        """Force-delete the pods bound to a Node that no longer exists (the pod GC controller's ``gcOrphaned``)."""
        assert self.manager is not None
        client = self._require_client()
        for pod in await self.manager.cache.list(POD):
            if (pod.get("spec") or {}).get("nodeName") == node_name:
                with contextlib.suppress(NotFound):
                    await client.delete(with_kind(pod, POD), grace_period_seconds=0)

    async def _report_node_info(self, node: dict[str, Any]) -> None:
        """Report the serving kubelet's ``status.nodeInfo`` on a Node registered with a status but without it (kaito's
        local provider): a kubelet sets it on every status sync (``setters.VersionInfo``), so ``kubectl get nodes``
        shows VERSION."""
        patch = {"status": {"nodeInfo": node_info(node["metadata"]["name"])}}
        with contextlib.suppress(NotFound):
            await self._require_client().status().patch(with_kind(node, NODE), patch)

    async def _report_ready(self, node: dict[str, Any]) -> None:
        """Fill a provisioner-created Node's status as its kubelet would on registration: keep its capacity (or
        default to 4 cpu / 16Gi / 110 pods), add ``nvidia.com/gpu`` from the ``nvidia.com/gpu.count`` label, and a
        ``Ready`` condition, addresses and nodeInfo."""
        template = node_object(node["metadata"]["name"], now=self.kubelet_clock.wall())
        status = dict(node.get("status") or {})
        capacity = dict(status.get("capacity") or status.get("allocatable") or template["status"]["capacity"])
        gpus = ((node.get("metadata") or {}).get("labels") or {}).get(GPU_COUNT_LABEL)
        if gpus and GPU_RESOURCE not in capacity:  # what the NVIDIA device plugin would advertise
            capacity[GPU_RESOURCE] = str(gpus)
        status.update(
            capacity=capacity,
            allocatable=status.get("allocatable") or capacity,
            conditions=template["status"]["conditions"],
            addresses=status.get("addresses") or template["status"]["addresses"],
            nodeInfo=status.get("nodeInfo") or template["status"]["nodeInfo"],
        )
        patch = {"metadata": {"resourceVersion": node["metadata"].get("resourceVersion")}, "status": status}
        with contextlib.suppress(NotFound, Conflict):  # Conflict: its registrant wrote the status meanwhile
            await self._require_client().status().patch(with_kind(node, NODE), patch)

    # ------------------------------------------------------------------ services and logs

    def service_address(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """The local ``(host, port)`` that forwards to Service ``namespace/name``'s ``port``.

        Raises:
            LookupError: the Service (or that port) does not exist yet; see :meth:`wait_service_address`.
        """
        address = self.proxy.address(namespace, name, port)
        if address is None:
            raise LookupError(
                f"service {namespace}/{name} port {port} has no local address: create the Service (with that port) "
                f"or wait for it with wait_service_address"
            )
        return address

    async def wait_service_address(
        self, namespace: str, name: str, port: int, *, ready: bool = True, timeout: float = 60.0
    ) -> tuple[str, int]:
        """Wait until the Service port is proxied (and, with ``ready``, has a ready backend); returns its address.

        Raises:
            TimeoutError: not there within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            address = self.proxy.address(namespace, name, port)
            if address is not None and (not ready or self.proxy.backends(namespace, name, port)):
                return address
            if loop.time() > deadline:
                raise TimeoutError(f"service {namespace}/{name} port {port} has no ready backend after {timeout}s")
            await asyncio.sleep(0.1)

    def port_map(self) -> dict[tuple[str, str, int], tuple[str, int]]:
        """Every Service port's local address (``(namespace, name, port) → (host, port)``)."""
        return self.proxy.port_map()

    def read_log(
        self, namespace: str, pod: str, container: str | None = None, previous: bool = False,
        tail_lines: int | None = None,
    ) -> bytes:
        """A container's log, from whichever local kubelet runs the pod.

        Raises:
            LookupError: no local kubelet runs the pod, or the container/run does not exist.
        """
        for kubelet in self.kubelets.values():
            if kubelet.worker(namespace, pod) is not None:
                return kubelet.read_log(namespace, pod, container, previous, tail_lines)
        raise LookupError(f'pod "{pod}" in namespace "{namespace}" is not running on any local node')

    def _local_port(self, namespace: str, pod: str, container_port: int) -> int | None:
        for kubelet in self.kubelets.values():
            port = kubelet.local_port(namespace, pod, container_port, ready_only=True)
            if port is not None:
                return port
        return None

    async def _log_provider(
        self, namespace: str, pod: str, container: str, follow: bool, tail_lines: int | None
    ) -> AsyncIterator[bytes]:
        from kreconcile.testing.apiserver import APIError

        try:
            data = self.read_log(namespace, pod, container, False, tail_lines)
        except LookupError as exc:
            raise APIError(400, "BadRequest", str(exc)) from exc
        yield data
        if not follow:
            return
        sent = len(data) if tail_lines is None else None
        while True:
            worker = next((k.worker(namespace, pod) for k in self.kubelets.values()
                           if k.worker(namespace, pod) is not None), None)
            if worker is None:
                return
            try:
                full = worker.read_log(container)
            except LookupError:
                return
            if sent is None:
                sent = len(full)
            if len(full) > sent:
                yield full[sent:]
                sent = len(full)
            record = next((r for r in worker.records if r.name == container), None)
            if record is None or "running" not in record.state:
                return
            await asyncio.sleep(0.2)

    def _require_client(self) -> Client:
        if self.client is None:
            raise RuntimeError("LocalCluster is not started: use `async with LocalCluster(...) as cluster:`")
        return self.client


NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def _not_ready_taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``not-ready`` taints of a Node whose ``Ready`` condition is True (to be removed)."""
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in (node.get("status") or {}).get("conditions") or [])
    taints = (node.get("spec") or {}).get("taints") or []
    return [t for t in taints if t.get("key") == NOT_READY_TAINT] if ready else []


__all__ = ["LocalCluster"]
