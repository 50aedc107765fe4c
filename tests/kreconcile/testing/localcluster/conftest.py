"""Fixtures for LocalCluster end-to-end tests: a running cluster, kubectl, polling and manifest builders."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kreconcile.testing.localcluster import LocalCluster

WEBSERVER = str(Path(__file__).parents[1] / "kubelet" / "webserver.py")
KUBECTL = str(Path(sys.executable).with_name("kubectl"))


async def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll a (sync or async) predicate until it returns something truthy; AssertionError after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None, check: bool = True) -> str:
    """Run kubectl against the cluster; returns stdout (raises AssertionError with stderr on failure)."""
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(cluster.kubeconfig_path), *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECACHEDIR": str(cluster.data_dir / "kubectl-cache")},
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {err.decode()}")
    return out.decode()


async def apply(cluster: LocalCluster, *objects: dict[str, Any]) -> str:
    """``kubectl apply -f -`` of ``objects``."""
    return await kubectl(cluster, "apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))


def web_container(port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "image": "python:3.11",
        "command": ["python", WEBSERVER, "--port", str(port)],
        "ports": [{"containerPort": port, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1},
        **extra,
    }


def deployment(name: str, replicas: int = 1, **pod_spec: Any) -> dict[str, Any]:
    spec = {"containers": [web_container()], "terminationGracePeriodSeconds": 2, **pod_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def service(name: str, port: int = 80, target: int | str = "http") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": target}]},
    }


REAL = pytest.param("real", marks=[pytest.mark.realserver, pytest.mark.timeout(3600)])


@pytest.fixture(params=["emulator", REAL])
def backend(request: pytest.FixtureRequest) -> str:
    """Each end-to-end test runs on the emulator and (marked ``realserver``) on a real 1.20 control plane."""
    return str(request.param)


@pytest.fixture
async def cluster(tmp_path: Path, backend: str) -> Any:
    async with LocalCluster(backend, data_dir=tmp_path / "cluster", job_backoff_base_s=0.2) as c:  # type: ignore[arg-type]
        yield c


async def logs(cluster: LocalCluster, pod: str) -> str:
    """``kubectl logs`` on the emulator; the kubelet's files on a real server (it cannot reach our kubelet)."""
    if cluster.backend == "emulator":
        return await kubectl(cluster, "logs", pod)
    return cluster.read_log("default", pod).decode()
