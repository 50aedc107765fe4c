"""The benchmark's kreconcile operator: ``python benchmarks/reconcile/kreconcile_operator.py KUBECONFIG NAMESPACE``.

Manager + ``Builder.for_(Counter)`` with :class:`GenerationChanged`, ``max_concurrent_reconciles=10``; the reconciler
reads the Counter from the cache and, when ``status.observed`` differs from ``spec.value``, writes ONE status merge
patch (``status.observed`` and a ``Ready`` condition set with :func:`set_condition`). The client-side rate limit is
off (``qps=0``), as kopf and the bare client have none; logging is configured at ``info`` (structlog's default,
without :func:`configure_logging`, prints a debug line per reconcile, here into the protocol's stdout pipe).
``stats`` reports ``controller_runtime_reconcile_total`` and ``rest_client_requests_total`` (by method)
from the process's Prometheus registry.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CONCURRENCY, GROUP, KIND, VERSION, serve_commands

from kreconcile import metrics
from kreconcile.builder import Builder
from kreconcile.conditions import set_condition
from kreconcile.config import load_config
from kreconcile.errors import ignore_not_found
from kreconcile.gvk import GVK
from kreconcile.log import configure_logging
from kreconcile.manager import Manager
from kreconcile.predicates import GenerationChanged
from kreconcile.reconcile import Request, Result

COUNTER = GVK(GROUP, VERSION, KIND)


class CounterReconciler:
    """Copies ``spec.value`` to ``status.observed`` with a ``Ready`` condition; one status patch per change."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def reconcile(self, request: Request) -> Result:
        """Read from the cache; write only when ``status.observed`` differs from ``spec.value``."""
        obj = await ignore_not_found(self.client.get(COUNTER, request.name, request.namespace))
        if obj is None:
            return Result()
        value = obj["spec"]["value"]
        status = obj.get("status") or {}
        if status.get("observed") == value:
            return Result()
        conditions = [dict(c) for c in status.get("conditions") or []]
        set_condition(conditions, "Ready", "True", "Observed", f"observed {value}",
                      observed_generation=obj["metadata"].get("generation"))
        await self.client.status().patch(obj, {"status": {"observed": value, "conditions": conditions}})
        return Result()


def _sum(name: str, by: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                key = sample.labels.get(by, "") if by else "all"
                out[key] = out.get(key, 0.0) + sample.value
    return out


async def main(kubeconfig: str, namespace: str) -> None:
    """Run the manager until ``quit``/EOF on stdin."""
    configure_logging("json", "info")  # as a deployed operator would; structlog's default prints debug lines too
    config = load_config(kubeconfig, qps=0, burst=1)
    mgr = Manager(config, metrics_bind_address="0", health_probe_bind_address="0", namespaces=[namespace],
                  graceful_shutdown_timeout=5)
    (Builder(mgr).named("counter").for_(COUNTER, predicates=[GenerationChanged()])
     .with_options(max_concurrent_reconciles=CONCURRENCY).complete(CounterReconciler(mgr.client)))
    stop = asyncio.Event()

    async def stats() -> dict[str, Any]:
        reconciles = _sum("controller_runtime_reconcile_total").get("all", 0.0)
        return {"reconciles": int(reconciles),
                "requests": {k: int(v) for k, v in _sum("rest_client_requests_total", "method").items()}}

    manager = asyncio.create_task(mgr.start(stop))
    commands = asyncio.create_task(serve_commands(stats, stop))
    await asyncio.wait({manager, commands}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await manager
    commands.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
