"""The benchmark's bare client: ``python benchmarks/reconcile/bare_client.py KUBECONFIG NAMESPACE``.

No watch, no cache: for each Counter it is told about, one GET and one status merge patch
(``status.observed = spec.value`` and the same ``Ready`` condition), at most 10 in flight. This is the minimal
write load a controller must put on the server, so its rate is the server's limit. Commands on stdin:
``pass PREFIX N`` (Counters ``PREFIX-0`` .. ``PREFIX-{N-1}``) and ``one NAME``; both answer ``{"done": n}``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CONCURRENCY, collection_path, serve_commands

from kreconcile.conditions import set_condition
from kreconcile.testing.kubeconfig import load

REQUESTS: dict[str, int] = {}
RECONCILES = 0


async def main(kubeconfig: str, namespace: str) -> None:
    """Serve ``pass``/``one`` commands until ``quit``/EOF on stdin."""
    base = collection_path(namespace)
    sem = asyncio.Semaphore(CONCURRENCY)
    stop = asyncio.Event()
    async with load(kubeconfig).session() as http:

        async def one(name: str) -> None:
            global RECONCILES
            async with sem:
                REQUESTS["GET"] = REQUESTS.get("GET", 0) + 1
                async with http.get(f"{base}/{name}") as r:
                    r.raise_for_status()
                    obj = await r.json()
                value = obj["spec"]["value"]
                conditions = [dict(c) for c in (obj.get("status") or {}).get("conditions") or []]
                set_condition(conditions, "Ready", "True", "Observed", f"observed {value}",
                              observed_generation=obj["metadata"].get("generation"))
                REQUESTS["PATCH"] = REQUESTS.get("PATCH", 0) + 1
                RECONCILES += 1
                async with http.patch(f"{base}/{name}/status",
                                      json={"status": {"observed": value, "conditions": conditions}},
                                      headers={"Content-Type": "application/merge-patch+json"}) as r:
                    r.raise_for_status()
                    await r.read()

        async def command(line: str) -> dict[str, Any]:
            words = line.split()
            if words[0] == "pass":
                names = [f"{words[1]}-{i}" for i in range(int(words[2]))]
            elif words[0] == "one":
                names = words[1:]
            else:
                return {"error": f"unknown command {line!r}"}
            await asyncio.gather(*(one(n) for n in names))
            return {"done": len(names)}

        async def stats() -> dict[str, Any]:
            return {"reconciles": RECONCILES, "requests": dict(REQUESTS)}

        await serve_commands(stats, stop, command)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
