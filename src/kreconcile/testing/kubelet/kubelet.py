"""``ProcessKubelet``: the node agent of one local Node. Runs the pods bound to it as local processes.

The kubelet itself does no API I/O: it talks to the cluster through a :class:`KubeletBackend` (read Secrets and
ConfigMaps, write ``pods/status``, finalize a deleted pod, record events). :mod:`kreconcile.testing.localcluster`
supplies one over a kreconcile client and drives :meth:`ProcessKubelet.sync_pod` from a pod controller; tests can
supply a dict-backed fake.

Contract of :meth:`ProcessKubelet.sync_pod` (idempotent, called with the latest pod bound to this node):

* new pod, not terminal → a :class:`~kreconcile.testing.kubelet.pod.PodWorker` starts it;
* ``metadata.deletionTimestamp`` set → containers get SIGTERM, SIGKILL after ``deletionGracePeriodSeconds``
  (else ``terminationGracePeriodSeconds``, default 30), then the backend's ``finalize_pod`` (a delete with grace 0,
  as the real kubelet does) so the API object goes away;
* :meth:`ProcessKubelet.forget_pod` → the pod vanished from the API without a graceful delete: stop its
  processes (grace as above) and drop it.

Status is written whenever it changes (coalesced: one write per pod per change burst), never on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import structlog

from kreconcile.clock import Clock, RealClock
from kreconcile.testing.kubelet.images import ImageMap
from kreconcile.testing.kubelet.pod import NodeContext, PodWorker

log = structlog.get_logger("kreconcile.testing.kubelet")

STATUS_RETRY_S = 1.0
"""Seconds before retrying a failed status write (real time)."""


class KubeletBackend(Protocol):
    """The cluster as the kubelet sees it."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret, or None when it does not exist."""
        ...

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None when it does not exist."""
        ...

    async def write_pod_status(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        """Replace ``pods/status`` of ``pod`` (identified by namespace, name and uid) with ``status``.

        Raise ``LookupError`` when the pod no longer exists (the kubelet then stops writing it).
        """
        ...

    async def finalize_pod(self, pod: Mapping[str, Any]) -> None:
        """Delete the pod with grace period 0 (its containers are stopped); no error if already gone."""
        ...

    def record_event(self, pod: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record a Kubernetes event about ``pod`` (fire and forget)."""
        ...


def _key(pod: Mapping[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return meta.get("namespace", "default"), meta.get("name", "")


class ProcessKubelet:
    """Runs the pods of node ``node_name`` as local processes (see module docstring).

    Args:
        node_name: the Node this kubelet serves.
        backend: API access (:class:`KubeletBackend`).
        image_map: image → local command map.
        data_dir: root directory for pod sandboxes, node hostPaths and PVC directories.
        clock: back-offs, probe periods and grace periods run on it (default: real time).
        base_env: the environment containers start from (default: PATH, HOME, ... of this process).
    """

    def __init__(
        self,
        node_name: str,
        backend: KubeletBackend,
        image_map: ImageMap,
        data_dir: Path,
        clock: Clock | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.node_name = node_name
        self.backend = backend
        self.image_map = image_map
        self.data_dir = Path(data_dir)
        self.clock: Clock = clock or RealClock()
        kwargs: dict[str, Any] = {} if base_env is None else {"base_env": dict(base_env)}
        self._ctx = NodeContext(
            node_name=node_name,
            image_map=image_map,
            clock=self.clock,
            data_dir=self.data_dir,
            get_secret=backend.get_secret,
            get_config_map=backend.get_config_map,
            on_change=self._on_change,
            on_event=backend.record_event,
            **kwargs,
        )
        self._workers: dict[str, PodWorker] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._terminating: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._log = log.bind(node=node_name)

    # ------------------------------------------------------------------ queries

    def worker(self, namespace: str, name: str) -> PodWorker | None:
        """The worker of the pod ``namespace/name`` on this node, or None."""
        uid = self._by_key.get((namespace, name))
        return self._workers.get(uid) if uid else None

    def local_port(self, namespace: str, name: str, container_port: int, ready_only: bool = False) -> int | None:
        """The 127.0.0.1 port that pod ``namespace/name``'s ``container_port`` is mapped to, or None.

        With ``ready_only``, None also while the container declaring the port is not ready (what the kubelet knows
        now, possibly ahead of the pod status in the API).
        """
        worker = self.worker(namespace, name)
        if worker is None:
            return None
        for container, ports in worker.ports.items():
            if container_port in ports:
                if ready_only and not any(r.name == container and r.ready for r in worker.records):
                    return None
                return ports[container_port]
        return None

    def read_log(
        self, namespace: str, name: str, container: str | None = None, previous: bool = False,
        tail_lines: int | None = None, limit_bytes: int | None = None,
    ) -> bytes:
        """A container's log (see :meth:`PodWorker.read_log`).

        Raises:
            LookupError: the pod is not on this node, or the container/run does not exist.
        """
        worker = self.worker(namespace, name)
        if worker is None:
            raise LookupError(f'pod "{name}" in namespace "{namespace}" is not running on node {self.node_name}')
        return worker.read_log(container, previous, tail_lines, limit_bytes)

    @property
    def pod_count(self) -> int:
        """Pods with a worker on this node (running, terminating or completed)."""
        return len(self._workers)

    # ------------------------------------------------------------------ driving

    async def sync_pod(self, pod: Mapping[str, Any]) -> None:
        """Bring the pod's processes in line with the pod object (see module docstring). Returns quickly."""
        if self._closed:
            return
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        key = _key(pod)
        self._ensure_writer()
        worker = self._workers.get(uid)
        if meta.get("deletionTimestamp"):
            if uid not in self._terminating:
                grace = meta.get("deletionGracePeriodSeconds")
                self._terminating[uid] = asyncio.create_task(
                    self._terminate(uid, pod, None if grace is None else float(grace), finalize=True)
                )
            return
        if worker is not None:
            worker.update_pod(pod)
            return
        old_uid = self._by_key.get(key)
        if old_uid and old_uid != uid:  # same name, new pod (StatefulSet recreate): the old one is gone
            await self.forget_pod(old_uid)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        worker = PodWorker(pod, self._ctx)
        self._workers[uid] = worker
        self._by_key[key] = uid
        self._written[uid] = dict(pod.get("status") or {})
        self._log.info("kubelet_pod_start", namespace=key[0], name=key[1], uid=uid)
        worker.start()
        self._on_change(worker)

    async def forget_pod(self, uid: str, grace_seconds: float | None = None) -> None:
        """The pod is gone from the API: stop its processes and drop it (waits until they are stopped)."""
        worker = self._workers.get(uid)
        if worker is None:
            return
        task = self._terminating.get(uid)
        if task is None:
            task = asyncio.create_task(self._terminate(uid, worker.pod, grace_seconds, finalize=False))
            self._terminating[uid] = task
        await asyncio.shield(task)

    async def _terminate(
        self, uid: str, pod: Mapping[str, Any], grace_seconds: float | None, finalize: bool
    ) -> None:
        worker = self._workers.get(uid)
        try:
            if worker is not None:
                await worker.stop(grace_seconds)
                if finalize:
                    await self._write_status(uid)
            if finalize:
                await self.backend.finalize_pod(pod)
        except Exception:
            self._log.exception("kubelet_pod_terminate_failed", uid=uid)
        finally:
            if worker is not None:
                key = (worker.namespace, worker.name)
                if self._by_key.get(key) == uid:
                    del self._by_key[key]
            self._workers.pop(uid, None)
            self._written.pop(uid, None)
            self._dirty.discard(uid)

    async def shutdown(self, grace_seconds: float | None = 5.0) -> None:
        """Stop every pod's processes (SIGTERM, SIGKILL after ``min(grace_seconds, pod grace)``) and the writer.

        Pods stay in the API (as when a node goes down); nothing is left running.
        """
        self._closed = True
        tasks = []
        for worker in list(self._workers.values()):
            grace = worker.grace_seconds if grace_seconds is None else min(grace_seconds, worker.grace_seconds)
            tasks.append(worker.stop(grace))
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in list(self._terminating.values()):
            with contextlib.suppress(Exception):
                await task
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    # ------------------------------------------------------------------ status writing

    def _on_change(self, worker: PodWorker) -> None:
        self._dirty.add(worker.uid)
        self._wake.set()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name=f"kubelet-status:{self.node_name}")

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            failed = False
            for uid in list(self._dirty):
                self._dirty.discard(uid)
                if not await self._write_status(uid):
                    self._dirty.add(uid)
                    failed = True
            if failed:
                await asyncio.sleep(STATUS_RETRY_S)
                self._wake.set()

    async def _write_status(self, uid: str) -> bool:
        """Write the worker's status if it changed; False when the write failed and should be retried."""
        worker = self._workers.get(uid)
        if worker is None:
            return True
        previous = self._written.get(uid, {})
        status = worker.status(previous)
        if status == previous:
            return True
        try:
            await self.backend.write_pod_status(worker.pod, status)
        except LookupError:
            return True
        except Exception as exc:
            self._log.warning("kubelet_status_write_failed", uid=uid, error=str(exc))
            return False
        self._written[uid] = status
        return True
