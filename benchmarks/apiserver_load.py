"""Load benchmark for the API server emulator (or any server given a kubeconfig).

Measures, against a fresh namespace:
  1. writes/s: ConfigMap creates, sequential and with ``--concurrency`` in flight;
  2. watch fan-out latency: ``--fanout-watchers`` watches on the namespace's ConfigMaps, then ``--fanout-writes``
     updates; latency is from the update's response to each watcher receiving its MODIFIED event (p50/p99/max);
  3. scale: ``--objects`` ConfigMaps and ``--watchers`` open watches, with the server's resident memory (VmRSS) before
     and after, then again after more writes flow through all watchers (to show memory does not keep growing).

By default the emulator runs as a subprocess (``python -m kreconcile.testing.apiserver``) so its memory is measured
alone; ``--kubeconfig PATH`` benchmarks another server instead (memory is then not measured).

    .venv/bin/python benchmarks/apiserver_load.py [--objects 10000 --watchers 1000] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from kreconcile.testing.kubeconfig import load


def _rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


async def _start_emulator(tmp: Path) -> tuple[asyncio.subprocess.Process, Path]:
    kubeconfig = tmp / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kreconcile.testing.apiserver",
                                                "--kubeconfig-out", str(kubeconfig), "--watch-window", "1000",
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"ready"):
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, kubeconfig


async def _writes(http: aiohttp.ClientSession, base: str, count: int, concurrency: int, prefix: str) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem, http.post(base, json={"metadata": {"name": f"{prefix}-{i}"}, "data": {"i": str(i)}}) as r:
            if r.status != 201:
                raise RuntimeError(f"create answered {r.status}: {await r.text()}")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - start)


async def _fanout(http: aiohttp.ClientSession, base: str, watchers: int, writes: int) -> dict[str, float]:
    async with http.post(base, json={"metadata": {"name": "fanout"}}) as r:
        rv = (await r.json())["metadata"]["resourceVersion"]
    received: dict[str, list[float]] = {}
    ready = 0
    all_ready = asyncio.Event()

    async def watch() -> None:
        nonlocal ready
        params = {"watch": "true", "resourceVersion": rv, "fieldSelector": "metadata.name=fanout",
                  "timeoutSeconds": "600"}
        async with http.get(base, params=params, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            ready += 1
            if ready == watchers:
                all_ready.set()
            got = 0
            async for line in resp.content:
                event = json.loads(line)
                value = event["object"].get("data", {}).get("n")
                if event["type"] == "MODIFIED" and value is not None:
                    received.setdefault(value, []).append(time.perf_counter())
                    got += 1
                    if got >= writes:
                        return

    tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
    await asyncio.wait_for(all_ready.wait(), 120)
    await asyncio.sleep(0.5)
    sent: dict[str, float] = {}
    for n in range(writes):
        async with http.patch(f"{base}/fanout", data=json.dumps({"data": {"n": str(n)}}),
                              headers={"Content-Type": "application/merge-patch+json"}) as r:
            await r.read()
            sent[str(n)] = time.perf_counter()
        await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    latencies = sorted((t - sent[n]) * 1000 for n, times in received.items() for t in times)
    return {"events": len(latencies), "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1], "max_ms": latencies[-1]}


async def _scale(http: aiohttp.ClientSession, base: str, objects: int, watchers: int, pid: int | None,
                 churn: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rss_start_mib": _rss_mib(pid)}
    await _writes(http, base, objects, 32, "obj")
    out["rss_after_objects_mib"] = _rss_mib(pid)
    stop = asyncio.Event()
    opened = 0

    async def watch() -> None:
        nonlocal opened
        async with http.get(base, params={"watch": "true", "resourceVersion": "0", "fieldSelector":
                                          "metadata.name=churn", "timeoutSeconds": "600"},
                            timeout=aiohttp.ClientTimeout(total=None)) as resp:
            opened += 1
            reader = asyncio.create_task(resp.content.read())
            await stop.wait()
            reader.cancel()

    tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
    while opened < watchers:
        await asyncio.sleep(0.1)
    out["rss_with_watchers_mib"] = _rss_mib(pid)
    async with http.post(base, json={"metadata": {"name": "churn"}}) as r:
        await r.read()
    for rounds in (1, 2):
        start = time.perf_counter()
        for n in range(churn):
            async with http.patch(f"{base}/churn", data=json.dumps({"data": {"n": str(n)}}),
                                  headers={"Content-Type": "application/merge-patch+json"}) as r:
                await r.read()
        out[f"churn{rounds}_writes_per_s"] = churn / (time.perf_counter() - start)
        await asyncio.sleep(1.0)
        out[f"rss_after_churn{rounds}_mib"] = _rss_mib(pid)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.kubeconfig:
            kubeconfig = Path(args.kubeconfig)
        else:
            proc, kubeconfig = await _start_emulator(Path(tmp))
        pid = proc.pid if proc is not None else args.server_pid
        try:
            access = load(kubeconfig)
            connector_limit = max(args.watchers, args.fanout_watchers) + 64
            async with aiohttp.ClientSession(base_url=access.server, headers=access.headers,
                                             connector=aiohttp.TCPConnector(ssl=access.ssl or False,
                                                                            limit=connector_limit)) as http:
                ns = f"bench-{os.getpid()}"
                async with http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
                    assert r.status == 201, await r.text()
                base = f"/api/v1/namespaces/{ns}/configmaps"
                result: dict[str, Any] = {"server": "emulator" if proc else str(kubeconfig)}
                result["writes_per_s_sequential"] = await _writes(http, base, args.writes, 1, "seq")
                result["writes_per_s_concurrent"] = await _writes(http, base, args.writes, args.concurrency, "con")
                result["fanout"] = await _fanout(http, base, args.fanout_watchers, args.fanout_writes)
                scale_ns = f"{ns}-scale"
                async with http.post("/api/v1/namespaces", json={"metadata": {"name": scale_ns}}) as r:
                    assert r.status == 201
                result["scale"] = await _scale(http, f"/api/v1/namespaces/{scale_ns}/configmaps", args.objects,
                                               args.watchers, pid, args.churn_writes)
                for name in (ns, scale_ns):
                    async with http.delete(f"/api/v1/namespaces/{name}") as r:
                        await r.read()
        finally:
            if proc is not None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
    return result


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", help="benchmark this server instead of a fresh emulator subprocess")
    p.add_argument("--server-pid", type=int, default=None,
                   help="with --kubeconfig: the server's pid, to report its memory (e.g. kube-apiserver's)")
    p.add_argument("--writes", type=int, default=1000, help="creates per writes/s measurement (default 1000)")
    p.add_argument("--concurrency", type=int, default=16, help="creates in flight (default 16)")
    p.add_argument("--fanout-watchers", type=int, default=100, help="watchers for fan-out latency (default 100)")
    p.add_argument("--fanout-writes", type=int, default=20, help="updates for fan-out latency (default 20)")
    p.add_argument("--objects", type=int, default=10_000, help="objects for the scale run (default 10000)")
    p.add_argument("--watchers", type=int, default=1000, help="watchers for the scale run (default 1000)")
    p.add_argument("--churn-writes", type=int, default=100,
                   help="updates per churn round, each delivered to every scale watcher (default 100)")
    return p.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(_parse())), indent=2))
