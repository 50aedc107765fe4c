"""The benchmark's kopf operator: ``python benchmarks/reconcile/kopf_operator.py KUBECONFIG NAMESPACE``.

``@kopf.on.create`` / ``@kopf.on.update`` handlers set ``status.observed = spec.value`` and the same ``Ready``
condition as the kreconcile reconciler (through kopf's ``patch``). Standalone (no peering), Kubernetes Event posting
off (kopf would otherwise post one Event per handler run), no finalizer (no delete handler); everything else is
kopf's default. ``stats`` reports handler runs and the HTTP requests kopf sent, by method, counted by wrapping
``aiohttp.ClientSession._request`` in this process (watch requests included).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kopf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import GROUP, PLURAL, VERSION, serve_commands

from kreconcile.conditions import set_condition

REQUESTS: dict[str, int] = {}
RECONCILES = 0
_original_request = aiohttp.ClientSession._request


async def _counting_request(self: aiohttp.ClientSession, method: str, *args: Any, **kwargs: Any) -> Any:
    REQUESTS[method.upper()] = REQUESTS.get(method.upper(), 0) + 1
    return await _original_request(self, method, *args, **kwargs)


aiohttp.ClientSession._request = _counting_request  # type: ignore[method-assign]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """No Events, standalone; quiet logs (a log line per handler would dominate CPU)."""
    settings.posting.enabled = False
    settings.peering.standalone = True


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Credentials from $KUBECONFIG."""
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def observe(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
    """Copy ``spec.value`` to ``status.observed`` with a ``Ready`` condition."""
    global RECONCILES
    RECONCILES += 1
    value = spec["value"]
    conditions = [dict(c) for c in status.get("conditions") or []]
    set_condition(conditions, "Ready", "True", "Observed", f"observed {value}",
                  observed_generation=meta.get("generation"))
    patch.status["observed"] = value
    patch.status["conditions"] = conditions


async def main(kubeconfig: str, namespace: str) -> None:
    """Run kopf until ``quit``/EOF on stdin."""
    os.environ["KUBECONFIG"] = kubeconfig
    logging.basicConfig(level=logging.WARNING)
    stop = asyncio.Event()

    async def stats() -> dict[str, Any]:
        return {"reconciles": RECONCILES, "requests": dict(REQUESTS)}

    operator = asyncio.create_task(kopf.operator(standalone=True, namespaces=[namespace], stop_flag=stop))
    commands = asyncio.create_task(serve_commands(stats, stop))
    await asyncio.wait({operator, commands}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await operator
    commands.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
