"""Two operator replicas against one API server: only the Lease holder reconciles; when it dies the other takes
over within the lease duration and nothing is provisioned twice."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kaito.api.crd import generate_crds
from kaito.operator.main import Operator, build_operator
from kaito.operator.options import parse_options
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.errors import NotFound
from kreconcile.gvk import GVK
from kreconcile.testing.apiserver import APIServer

pytestmark = pytest.mark.slow

LEASE = GVK("coordination.k8s.io", "v1", "Lease")
NODE = GVK("", "v1", "Node")
NODECLAIM = GVK("karpenter.sh", "v1", "NodeClaim")
CRD = GVK("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
LEASE_DURATION = 4.0
"""Short durations so the takeover is quick; ordered as leader election requires (4 > 3 > 1.2 × 1)."""


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def workspace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": name, "namespace": "default"},
        "resource": {"instanceType": "local-cpu", "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": "smollm2-135m-instruct"}},
    }  # fmt: skip


async def test_only_the_leader_provisions_and_the_standby_takes_over(apiserver: APIServer) -> None:
    config = load_config(str(apiserver.kubeconfig_path))
    client = Client(config)
    for crd in generate_crds().values():
        await client.apply(copy.deepcopy(crd), field_manager="test")
    for crd in generate_crds().values():
        await until(lambda n=crd["metadata"]["name"]: _established(client, n), 30, "CRDs established")
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kaito-workspace"}})

    opts = parse_options([
        "--leader-elect", f"--lease-duration={LEASE_DURATION}", "--renew-deadline=3", "--retry-period=1",
        "--no-webhook", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--provider=local",
        "--no-enable-tuning-controller", "--graceful-shutdown-timeout=2",
    ], {})  # fmt: skip
    replicas: dict[str, Operator] = {
        ident: build_operator(opts, load_config(str(apiserver.kubeconfig_path)), identity=ident,
                              skip_name_validation=True)
        for ident in ("replica-a", "replica-b")
    }
    stops = {ident: asyncio.Event() for ident in replicas}
    tasks = {ident: asyncio.create_task(op.manager.start(stops[ident])) for ident, op in replicas.items()}
    try:
        async def holder() -> str | None:
            try:
                lease = await client.get(LEASE, opts.leader_election_id, "kaito-workspace")
            except NotFound:
                return None
            return (lease.get("spec") or {}).get("holderIdentity")

        leader = await until(holder, 60, "a leader")
        standby = next(i for i in replicas if i != leader)

        await client.create(workspace("ws-one"))
        await until(lambda: _count(client, NODE, 1), 60, "the first workspace's Node")
        assert replicas[leader].provider.creates == 1  # type: ignore[union-attr]
        assert replicas[standby].provider.creates == 0  # type: ignore[union-attr]
        assert not replicas[standby].manager.elected().is_set()

        # the leader dies without releasing the Lease (a crash: its renewals just stop)
        tasks[leader].cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await tasks[leader]
        killed_at = time.monotonic()
        assert await until(lambda: _is(holder, standby), 60, "the standby to take the Lease") is True
        takeover = time.monotonic() - killed_at
        assert takeover <= LEASE_DURATION + 2 * opts.retry_period + 5.0, f"takeover took {takeover:.1f} s"

        await client.create(workspace("ws-two"))
        await until(lambda: _count(client, NODE, 2), 60, "the second workspace's Node")
        # the new leader resumed the first workspace without launching its machine again
        assert replicas[standby].provider.creates == 1  # type: ignore[union-attr]
        assert len((await client.list(NODECLAIM))["items"]) == 2
        assert len((await client.list(NODE))["items"]) == 2
    finally:
        for ident, task in tasks.items():
            stops[ident].set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)
        await client.close()


async def _established(client: Client, name: str) -> bool:
    crd = await client.get(CRD, name)
    conditions = crd.get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def _count(client: Client, gvk: GVK, n: int) -> bool:
    return len((await client.list(gvk))["items"]) >= n


async def _is(holder: Callable[[], Awaitable[str | None]], ident: str) -> bool:
    return await holder() == ident
