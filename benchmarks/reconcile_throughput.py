"""Reconcile throughput: kreconcile against kopf and a bare aiohttp client, on the emulator or a real server.

Every system gets its own namespace and runs as its own subprocess (``benchmarks/reconcile/``), so RSS (VmRSS) and
CPU (user + system) are read per process with psutil. The custom kind is ``counters.bench.kreconcile.dev``
(status subresource); the job is ``status.observed = spec.value`` plus one ``Ready`` condition, one status write per
change. The benchmark process watches the Counters itself and timestamps each status change as it arrives.

Per system it measures, after a warm-up object has converged (proof the operator is live, and the RSS baseline):

1. **create**: create N Counters (10 requests in flight) and wait until every ``status.observed == spec.value``;
   seconds from the first create to the last status seen, objects/s = N / seconds. The bare client has no watch: it
   is started after the creates (``pass``: GET + status PATCH per object, 10 in flight), so its figure is the
   server's limit for the minimal writes, without the creates sharing the server.
2. **update**: merge-patch ``spec.value`` of all N, the same way.
3. **latency**: ``--singles`` single spec patches, one at a time, with N objects present; from sending the patch to
   seeing ``status.observed`` change on the watch (p50/p99), beside the patch's own round trip (the server's write
   latency). For the bare client the benchmark sends ``one NAME`` after the patch returns (a best case: no watch).
4. **RSS** after the warm-up, after the creates (RSS per cached object = growth / N) and at the end; **CPU** seconds
   per phase and ms per reconcile; **API requests** per object per phase: kreconcile's own
   ``rest_client_requests_total``; kopf's and the bare client's HTTP requests counted in their processes by
   wrapping ``aiohttp.ClientSession._request`` (so watch/list requests are included for all three).
5. **restart backlog** (last): the process is stopped, all N specs change while it is down, and a fresh process is
   started; seconds from its start to the last status seen (the bare client is sent ``pass`` once it is ready).
   No writer competes with it, so this is the fair comparison with the bare client: all three start, find the N
   changes and write N statuses with the server to themselves. Also printed: seconds to ``ready`` and objects/s
   counted from then.

    .venv/bin/python benchmarks/reconcile_throughput.py --n 1000 [--server emulator|real|KUBECONFIG]
        [--systems kreconcile,kopf,bare] [--singles 100] [--json-out results.json]

The machine's load (``/proc/loadavg``) is recorded before and after: figures from a loaded machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reconcile"))

from common import CONCURRENCY, CRD, collection_path, counter  # noqa: E402

from kreconcile.testing.kubeconfig import load  # noqa: E402

SYSTEMS = ("kreconcile", "kopf", "bare")
SCRIPTS = {"kreconcile": "kreconcile_operator.py", "kopf": "kopf_operator.py", "bare": "bare_client.py"}
MERGE = {"Content-Type": "application/merge-patch+json"}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# ------------------------------------------------------------------------------------------------ server


@contextlib.asynccontextmanager
async def _server(kind: str) -> AsyncIterator[tuple[str, int | None]]:
    """Yield (kubeconfig path, server pid or None) for ``emulator``, ``real`` or an existing kubeconfig path."""
    if kind == "emulator":
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = Path(tmp) / "kubeconfig"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kreconcile.testing.apiserver", "--kubeconfig-out", str(kubeconfig),
                "--watch-window", "20000", stdout=asyncio.subprocess.PIPE)
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 120)
                if not line.startswith(b"ready"):
                    raise RuntimeError(f"emulator did not start: {line!r}")
                yield str(kubeconfig), proc.pid
            finally:
                proc.terminate()
                await proc.wait()
    elif kind == "real":
        from kreconcile.testing.realserver import RealAPIServer

        async with RealAPIServer(state_dir=None, controllers=("garbagecollector", "namespace"),
                                 scheduler=False) as srv:
            yield str(srv.token_kubeconfig_path), None
    else:
        yield kind, None


async def _install_crd(http: aiohttp.ClientSession) -> None:
    async with http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD) as r:
        if r.status not in (201, 409):
            raise RuntimeError(f"creating the CRD answered {r.status}: {await r.text()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with http.get(collection_path("default")) as r:
            if r.status == 200:
                return
        await asyncio.sleep(0.2)  # polling the server for the CRD to be served; no logic waits on time
    raise RuntimeError("the Counter CRD was not served within 60 s")


# ------------------------------------------------------------------------------------------------ observer


class Observer:
    """Watches the Counters of one namespace and timestamps (``time.perf_counter``) every ``status.observed``."""

    def __init__(self, http: aiohttp.ClientSession, namespace: str) -> None:
        self.http, self.namespace = http, namespace
        self.observed: dict[str, Any] = {}
        self.events = 0
        self.lists = 0
        self._pending: set[str] = set()
        self._target: int | None = None
        self._all_done = asyncio.Event()
        self._done_at = 0.0
        self._singles: dict[str, tuple[int, asyncio.Future[float]]] = {}
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._synced.wait(), 60)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        value = (obj.get("status") or {}).get("observed")
        self.observed[name] = value
        now = time.perf_counter()
        if self._target is not None and value == self._target and name in self._pending:
            self._pending.discard(name)
            if not self._pending:
                self._done_at = now
                self._all_done.set()
        single = self._singles.get(name)
        if single and value == single[0] and not single[1].done():
            single[1].set_result(now)

    async def _run(self) -> None:
        while True:
            try:
                await self._list_and_watch()
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                # a real server closes slow watches (and may answer 410 Gone): relist, as an informer would
                print(f"observer: watch ended ({exc!r}); relisting", file=sys.stderr, flush=True)
                await asyncio.sleep(0.2)

    async def _list_and_watch(self) -> None:
        base = collection_path(self.namespace)
        while True:
            async with self.http.get(base) as r:
                r.raise_for_status()
                listed = await r.json()
            for obj in listed["items"]:
                self._see(obj)
            rv = listed["metadata"]["resourceVersion"]
            self.lists += 1
            self._synced.set()
            params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "3600", "allowWatchBookmarks": "true"}
            async with self.http.get(base, params=params, timeout=aiohttp.ClientTimeout(total=None)) as r:
                r.raise_for_status()
                async for line in r.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.events += 1
                        self._see(event["object"])

    async def wait_all(self, names: list[str], target: int, timeout: float) -> tuple[bool, float, int]:
        """Wait until every name shows ``status.observed == target``; (converged, perf_counter time, how many)."""
        self._target, self._all_done = target, asyncio.Event()
        self._pending = {n for n in names if self.observed.get(n) != target}
        if not self._pending:
            return True, time.perf_counter(), len(names)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_done.wait(), timeout)
        ok = not self._pending
        return ok, self._done_at if ok else time.perf_counter(), len(names) - len(self._pending)

    def expect(self, name: str, target: int) -> asyncio.Future[float]:
        """A future resolved with the time ``name`` shows ``status.observed == target``."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._singles[name] = (target, fut)
        return fut


# ------------------------------------------------------------------------------------------------ operator process


class Operator:
    """One system's subprocess and its line protocol (see ``benchmarks/reconcile/__init__.py``)."""

    def __init__(self, system: str, kubeconfig: str, namespace: str, profile: Path | None = None) -> None:
        self.system, self.kubeconfig, self.namespace = system, kubeconfig, namespace
        self.profile = profile
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    async def start(self) -> None:
        argv = [sys.executable, str(HERE / "reconcile" / SCRIPTS[self.system]), self.kubeconfig, self.namespace]
        if self.profile is not None:  # py-spy (PyPI) samples the operator; collapsed stacks go to self.profile
            argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--rate", "200",
                    "-o", str(self.profile), "--", *argv]
        self.proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(self._readline(), 120)
        if line != "ready":
            raise RuntimeError(f"{self.system} did not start: {line!r}")
        self.ps = psutil.Process(self.proc.pid)
        if self.profile is not None:
            self.ps = self.ps.children()[0]

    async def _readline(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                raise RuntimeError(f"{self.system} exited (rc {self.proc.returncode})")
            line = raw.decode().strip()
            if line == "ready" or line.startswith("{"):
                return line

    async def command(self, line: str, timeout: float = 600) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        result: dict[str, Any] = json.loads(await asyncio.wait_for(self._readline(), timeout))
        return result

    def sample(self) -> dict[str, float]:
        """RSS (MiB) and CPU seconds (user + system) of the process now."""
        assert self.ps is not None
        cpu = self.ps.cpu_times()
        return {"rss_mib": self.ps.memory_info().rss / 2**20, "cpu_s": cpu.user + cpu.system}

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(Exception):
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ------------------------------------------------------------------------------------------------ one system


async def _in_flight(count: int, fn: Any) -> list[Any]:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> Any:
        async with sem:
            return await fn(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


def _delta(before: dict[str, Any], after: dict[str, Any], n: int, s0: dict[str, float],
           s1: dict[str, float]) -> dict[str, Any]:
    reqs = {m: after["requests"].get(m, 0) - before["requests"].get(m, 0) for m in after["requests"]}
    reconciles = after["reconciles"] - before["reconciles"]
    cpu = s1["cpu_s"] - s0["cpu_s"]
    return {
        "reconciles": reconciles,
        "requests": reqs,
        "requests_per_object": sum(reqs.values()) / n,
        "writes_per_object": sum(v for m, v in reqs.items() if m in WRITE_METHODS) / n,
        "cpu_s": cpu,
        "cpu_ms_per_reconcile": 1000 * cpu / reconciles if reconciles else None,
    }


async def run_system(system: str, kubeconfig: str, n: int, singles: int,
                     profile: Path | None = None) -> dict[str, Any]:
    """Benchmark one system against the server in ``kubeconfig``; returns the figures (see the module doc)."""
    namespace = f"bench-{system}-{uuid.uuid4().hex[:6]}"
    names = [f"c-{i}" for i in range(n)]
    timeout = 120 + 0.5 * n
    out: dict[str, Any] = {"system": system, "n": n, "namespace": namespace}
    async with load(kubeconfig).session() as http:
        async with http.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}) as r:
            if r.status != 201:
                raise RuntimeError(f"creating namespace {namespace} answered {r.status}: {await r.text()}")
        base = collection_path(namespace)
        observer = Observer(http, namespace)
        await observer.start()
        op = Operator(system, kubeconfig, namespace, profile if system == "kreconcile" else None)
        await op.start()
        try:
            # warm-up: one object end to end, so the operator is live and its RSS baseline is taken with a cache
            async with http.post(base, json=counter("warmup", namespace, 1)) as r:
                r.raise_for_status()
            if system == "bare":
                await op.command("one warmup")
            ok, _, _ = await observer.wait_all(["warmup"], 1, 120)
            if not ok:
                raise RuntimeError(f"{system}: the warm-up Counter never converged")
            base_stats, base_sample = await op.command("stats"), op.sample()
            out["rss_baseline_mib"] = base_sample["rss_mib"]

            async def create(i: int) -> None:
                async with http.post(base, json=counter(names[i], namespace, 1)) as r:
                    if r.status != 201:
                        raise RuntimeError(f"create {names[i]} answered {r.status}: {await r.text()}")

            async def update(i: int) -> None:
                async with http.patch(f"{base}/{names[i]}", json={"spec": {"value": 2}}, headers=MERGE) as r:
                    if r.status != 200:
                        raise RuntimeError(f"patch {names[i]} answered {r.status}: {await r.text()}")

            stats, sample = base_stats, base_sample
            for phase, target, write in (("create", 1, create), ("update", 2, update)):
                t0 = time.perf_counter()
                await _in_flight(n, write)
                written = time.perf_counter() - t0
                if system == "bare":
                    t0 = time.perf_counter()  # the bare client starts once every object exists (see module doc)
                    await op.command(f"pass c {n}", timeout)
                ok, done_at, converged = await observer.wait_all(names, target, timeout)
                seconds = done_at - t0
                after_stats = await op.command("stats")
                settle = time.monotonic() + 10
                while after_stats["reconciles"] - stats["reconciles"] < n and ok and time.monotonic() < settle:
                    # the status can reach the watch before the operator has counted its reconcile: poll its count
                    await asyncio.sleep(0.05)
                    after_stats = await op.command("stats")
                after_sample = op.sample()
                out[phase] = {"converged": ok, "converged_objects": converged, "seconds": seconds,
                              "objects_per_s": n / seconds, "writes_issued_s": written,
                              **_delta(stats, after_stats, n, sample, after_sample)}
                if phase == "create":
                    out["rss_after_create_mib"] = after_sample["rss_mib"]
                    out["rss_per_object_kib"] = 1024 * (after_sample["rss_mib"] - base_sample["rss_mib"]) / n
                stats, sample = after_stats, after_sample

            latencies, writes = [], []
            for i in range(min(singles, n)):
                name = names[(i * max(1, n // max(1, singles))) % n]
                fut = observer.expect(name, 3)
                t0 = time.perf_counter()
                async with http.patch(f"{base}/{name}", json={"spec": {"value": 3}}, headers=MERGE) as r:
                    r.raise_for_status()
                    await r.read()
                writes.append(time.perf_counter() - t0)
                if system == "bare":
                    await op.command(f"one {name}")
                latencies.append(await asyncio.wait_for(fut, 60) - t0)
            if latencies:
                out["latency"] = {
                    "count": len(latencies), "p50_ms": 1000 * _pct(latencies, 0.5),
                    "p99_ms": 1000 * _pct(latencies, 0.99), "write_p50_ms": 1000 * _pct(writes, 0.5),
                    "mean_ms": 1000 * statistics.fmean(latencies)}
            end = op.sample()
            out["rss_end_mib"], out["cpu_total_s"] = end["rss_mib"], end["cpu_s"]
            out["watch_events_seen"], out["watch_relists"] = observer.events, observer.lists - 1

            # restart backlog: the process stops, every spec changes while it is down, a fresh process catches up
            # with the server to itself (no writer competing): the same footing for all three systems
            await op.stop()

            async def backlog(i: int) -> None:
                async with http.patch(f"{base}/{names[i]}", json={"spec": {"value": 4}}, headers=MERGE) as r:
                    if r.status != 200:
                        raise RuntimeError(f"patch {names[i]} answered {r.status}: {await r.text()}")

            await _in_flight(n, backlog)
            op = Operator(system, kubeconfig, namespace)
            t0 = time.perf_counter()
            await op.start()
            ready_s = time.perf_counter() - t0
            s0 = op.sample()
            if system == "bare":
                await op.command(f"pass c {n}", timeout)
            ok, done_at, converged = await observer.wait_all(names, 4, timeout)
            final = await op.command("stats")
            out["backlog"] = {"converged": ok, "converged_objects": converged, "seconds": done_at - t0,
                              "ready_s": ready_s, "objects_per_s": n / (done_at - t0),
                              "after_ready_objects_per_s": n / max(1e-9, done_at - t0 - ready_s),
                              **_delta({"reconciles": 0, "requests": {}}, final, n, s0, op.sample())}
        finally:
            await op.stop()
            await observer.stop()
            async with http.delete(f"/api/v1/namespaces/{namespace}") as r:
                await r.read()
    return out


# ------------------------------------------------------------------------------------------------ report


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def report(results: dict[str, Any]) -> str:
    """A Markdown table of ``results`` (as :func:`run` returns) with the kreconcile/kopf and kreconcile/bare
    ratios of objects/s."""
    rows = [
        ("create: s to converge", lambda r: _fmt(r["create"]["seconds"], 2)),
        ("create: objects/s", lambda r: _fmt(r["create"]["objects_per_s"], 0)),
        ("update: s to converge", lambda r: _fmt(r["update"]["seconds"], 2)),
        ("update: objects/s", lambda r: _fmt(r["update"]["objects_per_s"], 0)),
        ("s issuing the N writes (create / update)",
         lambda r: f'{_fmt(r["create"]["writes_issued_s"], 1)} / {_fmt(r["update"]["writes_issued_s"], 1)}'),
        ("s from the last write to converged (create / update)", lambda r: "n/a (starts after)" if r["system"] == "bare"
         else f'{_fmt(r["create"]["seconds"] - r["create"]["writes_issued_s"], 1)} / '
              f'{_fmt(r["update"]["seconds"] - r["update"]["writes_issued_s"], 1)}'),
        ("restart backlog: s from process start to N converged",
         lambda r: _fmt(r.get("backlog", {}).get("seconds"), 2)),
        ("restart backlog: objects/s (after ready)", lambda r: f'{_fmt(r.get("backlog", {}).get("objects_per_s"), 0)} '
         f'({_fmt(r.get("backlog", {}).get("after_ready_objects_per_s"), 0)})'),
        ("restart backlog: s to ready", lambda r: _fmt(r.get("backlog", {}).get("ready_s"), 2)),
        ("restart backlog: API requests per object",
         lambda r: _fmt(r.get("backlog", {}).get("requests_per_object"), 2)),
        ("update → status p50 ms", lambda r: _fmt(r.get("latency", {}).get("p50_ms"))),
        ("update → status p99 ms", lambda r: _fmt(r.get("latency", {}).get("p99_ms"))),
        ("server write (spec PATCH) p50 ms", lambda r: _fmt(r.get("latency", {}).get("write_p50_ms"))),
        ("RSS after warm-up MiB", lambda r: _fmt(r["rss_baseline_mib"])),
        ("RSS with N objects MiB", lambda r: _fmt(r["rss_after_create_mib"])),
        ("RSS per cached object KiB", lambda r: _fmt(r["rss_per_object_kib"], 2)),
        ("CPU s (create + update)", lambda r: _fmt(r["create"]["cpu_s"] + r["update"]["cpu_s"], 2)),
        ("CPU ms per reconcile (create)", lambda r: _fmt(r["create"]["cpu_ms_per_reconcile"], 2)),
        ("CPU ms per reconcile (update)", lambda r: _fmt(r["update"]["cpu_ms_per_reconcile"], 2)),
        ("reconciles (create / update)", lambda r: f'{r["create"]["reconciles"]} / {r["update"]["reconciles"]}'),
        ("API requests per object (create)", lambda r: _fmt(r["create"]["requests_per_object"], 2)),
        ("API requests per object (update)", lambda r: _fmt(r["update"]["requests_per_object"], 2)),
        ("watch events per change (seen by the benchmark; relists)",
         lambda r: _fmt((r["watch_events_seen"] - 2) / (2 * r["n"] + r.get("latency", {}).get("count", 0)), 2)
         + f' ({r.get("watch_relists", 0)})'),
        ("writes per object (create / update)",
         lambda r: f'{_fmt(r["create"]["writes_per_object"], 2)} / {_fmt(r["update"]["writes_per_object"], 2)}'),
    ]
    systems = [s for s in SYSTEMS if s in results["systems"]]
    lines = [f"N = {results['n']}, server: {results['server']}, load average before {results['load_before']}, "
             f"after {results['load_after']}", "",
             "| | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(results["systems"][s]) for s in systems) + " |")
    k = results["systems"].get("kreconcile")
    for other in ("kopf", "bare"):
        o = results["systems"].get(other)
        if k and o:
            lines.append("")
            create = k["create"]["objects_per_s"] / o["create"]["objects_per_s"]
            update = k["update"]["objects_per_s"] / o["update"]["objects_per_s"]
            line = f"kreconcile/{other}: create {create:.2f}×, update {update:.2f}×"
            if "backlog" in k and "backlog" in o:  # absent in results saved before the phase existed
                line += f', restart backlog {k["backlog"]["objects_per_s"] / o["backlog"]["objects_per_s"]:.2f}×'
            lines.append(line)
    return "\n".join(lines)


async def run(server: str, n: int, systems: list[str], singles: int, profile: Path | None = None) -> dict[str, Any]:
    """Start (or reach) the server, install the CRD and benchmark each system in turn; returns all figures."""
    results: dict[str, Any] = {"n": n, "server": server, "load_before": _loadavg(), "systems": {}}
    async with _server(server) as (kubeconfig, server_pid):
        async with load(kubeconfig).session() as http:
            await _install_crd(http)
        for system in systems:
            results["systems"][system] = await run_system(system, kubeconfig, n, singles, profile)
            print(f"{system}: done ({_loadavg()})", file=sys.stderr, flush=True)
        if server_pid is not None:
            results["server_rss_mib"] = psutil.Process(server_pid).memory_info().rss / 2**20
    results["load_after"] = _loadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the Markdown table (and writes JSON with ``--json-out``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="Counters per system (default 1000)")
    p.add_argument("--server", default="emulator", help="'emulator' (default), 'real' or a kubeconfig path")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    p.add_argument("--singles", type=int, default=100, help="single updates for the latency figures (default 100)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON here")
    p.add_argument("--profile-kreconcile", type=Path, default=None,
                   help="run the kreconcile operator under py-spy (pip install py-spy); collapsed stacks go here")
    p.add_argument("--report", type=Path, default=None, help="only print the table of a saved --json-out file")
    args = p.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if args.server not in ("emulator", "real") and not Path(args.server).is_file():
        p.error(f"--server must be 'emulator', 'real' or a kubeconfig path; {args.server!r} is none of these")
    if unknown or args.n < 1:
        p.error(f"--systems must name {', '.join(SYSTEMS)} (got {unknown}); --n must be >= 1")
    results = asyncio.run(run(args.server, args.n, systems, args.singles, args.profile_kreconcile))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
