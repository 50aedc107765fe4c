"""What the benchmark's operators share: the custom kind, the status they write and the stdin/stdout protocol."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

GROUP, VERSION, PLURAL, KIND = "bench.kreconcile.dev", "v1", "counters", "Counter"
API_VERSION = f"{GROUP}/{VERSION}"
CONCURRENCY = 10
"""Workers / requests in flight for every system (kreconcile's max_concurrent_reconciles, the bare client's
concurrency; kopf has no equivalent knob and runs one worker per object)."""

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "counter", "kind": KIND, "listKind": f"{KIND}List"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "required": ["value"],
                             "properties": {"value": {"type": "integer"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
                        "observed": {"type": "integer"},
                        "conditions": {"type": "array", "items": {
                            "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }},
                },
            }},
        }],
    },
}
"""``counters.bench.kreconcile.dev``: namespaced, status subresource, ``spec.value`` integer, ``status.observed``
integer plus ``status.conditions`` (status keeps unknown fields so kopf's own bookkeeping survives)."""


def counter(name: str, namespace: str, value: int) -> dict[str, Any]:
    """A Counter object with ``spec.value = value``."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": {"value": value}}


def collection_path(namespace: str) -> str:
    """The REST path of the Counters in ``namespace``."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


async def serve_commands(stats: Callable[[], Awaitable[dict[str, Any]]], stop: asyncio.Event,
                         extra: Callable[[str], Awaitable[dict[str, Any]]] | None = None) -> None:
    """Answer the benchmark on stdin/stdout: ``stats`` → one JSON line from ``stats()``, ``quit``/EOF → set
    ``stop``; any other line goes to ``extra`` (if given) and its result is printed as JSON."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            stop.set()
            return
        if line == "stats":
            result = await stats()
        elif extra is not None:
            result = await extra(line)
        else:
            result = {"error": f"unknown command {line!r}"}
        print(json.dumps(result), flush=True)
