"""Benchmark: N Workspaces applied at once converge (local provider, zero launch delay).

Starts the API server emulator with kaito's CRDs and an operator (workspace + machine controllers, local
provider) in this process, creates N inference Workspaces (the CPU preset on ``local-cpu``) at once and waits
until every one has ``ResourceReady=True`` and its StatefulSet exists; then reports StatefulSets ready (as the
StatefulSet controller would) and waits for ``WorkspaceSucceeded=True`` (a prober that always answers).
Reports seconds and the operator's API requests per workspace (``rest_client_requests_total``).

    python benchmarks/workspaces_converge.py [-n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kaito.controllers.harness import (
    STATEFULSET,
    WORKSPACE,
    FakeProber,
    condition,
    install_crds,
    mark_statefulset_ready,
    running_operator,
    workspace,
)

from kaito.api import constants as c
from kreconcile.client import Client
from kreconcile.config import load_config
from kreconcile.log import configure_logging
from kreconcile.metrics import REGISTRY
from kreconcile.testing.apiserver import APIServer


def api_requests() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "rest_client_requests":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def count_with(client: Client, type_: str) -> int:
    items = (await client.list(WORKSPACE, "default"))["items"]
    return sum(1 for ws in items if (condition(ws, type_) or {}).get("status") == "True")


async def wait_all(client: Client, type_: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await count_with(client, type_) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await count_with(client, type_)}/{n} workspaces have {type_}=True")
        await asyncio.sleep(0.1)


async def main(n: int) -> None:
    configure_logging("console", "warning")
    async with APIServer() as server:
        async with Client(load_config(str(server.kubeconfig_path)).with_rate(0)) as client:
            await install_crds(client)
            async with running_operator(server, client, prober=FakeProber(True)):
                await asyncio.sleep(0.5)  # let the caches sync before the burst
                before = api_requests()
                t0 = time.monotonic()
                await asyncio.gather(*(client.create(workspace(f"ws-{i}", instance_type="local-cpu",
                                                               preset="smollm2-135m-instruct")) for i in range(n)))
                created = time.monotonic() - t0
                await wait_all(client, c.COND_RESOURCE_READY, n, 600)
                resource_s = time.monotonic() - t0
                while len((await client.list(STATEFULSET, "default"))["items"]) < n:
                    await asyncio.sleep(0.1)
                workload_s = time.monotonic() - t0
                await asyncio.gather(*(mark_statefulset_ready(client, f"ws-{i}") for i in range(n)))
                await wait_all(client, c.COND_WORKSPACE_SUCCEEDED, n, 600)
                ready_s = time.monotonic() - t0
                requests = api_requests() - before
    print(f"workspaces: {n}")
    print(f"create calls done: {created:.2f} s")
    print(f"all ResourceReady: {resource_s:.2f} s")
    print(f"all StatefulSets created: {workload_s:.2f} s")
    print(f"all WorkspaceSucceeded (after StatefulSets reported ready): {ready_s:.2f} s")
    print(f"operator API requests: {requests:.0f} ({requests / n:.1f} per workspace)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="workspaces (default 100)")
    asyncio.run(main(parser.parse_args().n))
