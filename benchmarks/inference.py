"""Inference benchmark: our server against a sequential baseline, ``transformers serve`` and vLLM-CPU.

Same model, same machine, one run: OpenAI chat requests with fixed prompts (about 50 prompt tokens), ``max_tokens``
64, greedy, at several concurrencies. For each system and concurrency it reports output tokens/s, p50/p95
request latency and p50 time to first token (streaming), and writes a JSON file, a Markdown table and (when
matplotlib is importable) a PNG plot. Systems (issue 7):

- ``ours``: ``python -m kaito.runtime.inference`` (continuous batching) with ``--ours-dtype`` (default ``auto``,
  what a pod runs: float16 weights with float32 arithmetic on an AVX2 CPU)
- ``sequential``: benchmarks/sequential_server.py, one ``model.generate`` per request (upstream's runtime shape)
- ``tf-serve``: ``transformers serve --continuous-batching`` (needs ``transformers[serving]``: ``--serve-python``)
- ``vllm``: vLLM's CPU build in its own venv (``--vllm-python``), bf16, tcmalloc and Intel OpenMP preloaded
- ``raw``: in-process ``model.generate`` latency for one request (the floor for concurrency 1); ``raw-auto``: the
  same with the model as our server loads it by default

A system name may end in ``-<dtype>`` to override its dtype for that run: ``ours-float32``, ``vllm-float16``.

Examples::

    python benchmarks/inference.py --systems ours,sequential --concurrency 1,4,16 --rounds 2
    python benchmarks/inference.py --systems ours --soak-seconds 600      # memory over a 10-minute soak

Each system is started as a subprocess on 127.0.0.1, measured, and stopped before the next one starts, so they
never compete for the CPU with each other (only with whatever else runs on the machine: record it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "Explain in a few sentences why the sky looks blue during the day and turns red and orange at sunset, "
    "using simple words a curious ten year old child would understand.",
    "Write a short friendly email to a colleague asking whether the weekly planning meeting can move from "
    "Monday morning to Tuesday afternoon because of a dentist appointment.",
    "List some practical tips for keeping a small vegetable garden healthy during a hot and dry summer, "
    "including watering, mulching and choosing the right plants.",
    "Describe the main differences between a list and a tuple in Python, and give an example of when you "
    "would prefer one over the other in a real program.",
    "Summarize the plot of a classic fairy tale about a girl in a red hood who visits her grandmother "
    "in the forest, in no more than a few sentences.",
    "Give advice to a beginner who wants to start running regularly: how often to run, how far to go "
    "at first, and how to avoid common injuries.",
    "What are the benefits of reading books every day? Mention effects on vocabulary, concentration, "
    "empathy and sleep, and keep the answer short.",
    "Explain what a Kubernetes operator is and why teams write them, in plain language for someone who "
    "has deployed containers before but never written one.",
]


@dataclass
class Level:
    """Results of one concurrency level."""

    system: str
    concurrency: int
    requests: int
    errors: int
    output_tokens: int
    wall_s: float
    tok_s: float
    latency_p50_s: float
    latency_p95_s: float
    ttft_p50_s: float | None
    error_samples: list[str] = field(default_factory=list)
    loadavg_1m: float | None = None
    """The machine's 1-minute load average when the level ended (other processes compete for the CPU)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def one_request(
    session: aiohttp.ClientSession, url: str, model: str, prompt: str, max_tokens: int, stream: bool
) -> tuple[float, float | None, int]:
    """Send one chat request; return (latency s, time to first token s or None, output tokens)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    start = time.perf_counter()
    if not stream:
        async with session.post(url, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {str(data)[:200]}")
        return time.perf_counter() - start, None, int(data["usage"]["completion_tokens"])
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    ttft: float | None = None
    chunks, usage = 0, None
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            event = json.loads(payload)
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - start
    tokens = int(usage["completion_tokens"]) if usage else chunks
    return time.perf_counter() - start, ttft, tokens


async def run_level(
    base: str, system: str, model: str, concurrency: int, total: int, max_tokens: int, stream: bool
) -> Level:
    url = base + "/v1/chat/completions"
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = 0
    errors: list[str] = []
    next_index = 0
    timeout = aiohttp.ClientTimeout(total=1800)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, tokens
        while next_index < total:
            i = next_index
            next_index += 1
            try:
                lat, ttft, n = await one_request(session, url, model, PROMPTS[i % len(PROMPTS)], max_tokens, stream)
            except Exception as exc:
                errors.append(repr(exc)[:300])
                continue
            latencies.append(lat)
            tokens += n
            if ttft is not None:
                ttfts.append(ttft)

    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return Level(
        system,
        concurrency,
        len(latencies),
        len(errors),
        tokens,
        round(wall, 3),
        round(tokens / wall, 2) if wall else 0.0,
        round(pct(latencies, 0.5), 3),
        round(pct(latencies, 0.95), 3),
        round(statistics.median(ttfts), 3) if ttfts else None,
        errors[:3],
        round(os.getloadavg()[0], 2),
    )


def preload_env() -> dict[str, str]:
    """LD_PRELOAD of Debian's tcmalloc and the venv's Intel OpenMP for vLLM-CPU (as in the issue's anchors)."""
    candidates = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
    libs = [p for name in candidates if os.path.exists(p := f"/usr/lib/x86_64-linux-gnu/{name}")][:1]
    return {"LD_PRELOAD": ":".join(libs)} if libs else {}


DTYPES = ("auto", "float32", "bfloat16", "float16")


def split_system(system: str) -> tuple[str, str | None]:
    """``"ours-float32"`` → ``("ours", "float32")``; a name without a dtype suffix → ``(name, None)``."""
    name, _, suffix = system.rpartition("-")
    return (name, suffix) if name and suffix in DTYPES else (system, None)


def command(system: str, args: argparse.Namespace, port: int) -> tuple[list[str], dict[str, str], str]:
    """(argv, extra environment, API model name) that start ``system`` (optionally ``name-dtype``) on ``port``."""
    d = str(args.model_dir)
    system, dtype = split_system(system)
    if system == "ours":
        return (
            [
                sys.executable,
                "-m",
                "kaito.runtime.inference",
                "--model-dir",
                d,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dtype",
                dtype or args.ours_dtype,
                "--max-batch-size",
                str(args.max_batch_size),
                "--max-waiting",
                "1024",
                "--max-model-len",
                "2048",
                *(["--threads", str(args.threads)] if args.threads else []),
            ],
            {},
            Path(d).name,
        )
    if system == "sequential":
        return (
            [
                sys.executable,
                str(ROOT / "benchmarks" / "sequential_server.py"),
                "--model-dir",
                d,
                "--port",
                str(port),
                "--dtype",
                dtype or args.dtype,
                *(["--threads", str(args.threads)] if args.threads else []),
            ],
            {},
            "seq",
        )
    if system == "tf-serve":
        code = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; main()"
        return (
            [
                args.serve_python,
                "-c",
                code,
                "serve",
                "--device",
                "cpu",
                "--dtype",
                dtype or args.dtype,
                "--continuous-batching",
                "--cb-num-blocks",
                "32",
                "--cb-max-batch-tokens",
                "1024",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            {},
            d,
        )
    if system == "vllm":
        env = {"VLLM_CPU_KVCACHE_SPACE": "2", **preload_env()}
        iomp = sorted(Path(args.vllm_python).resolve().parent.parent.glob("lib/libiomp5.so"))
        if iomp:
            env["LD_PRELOAD"] = ":".join(filter(None, [env.get("LD_PRELOAD", ""), str(iomp[0])]))
        return (
            [
                args.vllm_python,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                d,
                "--dtype",
                dtype or args.vllm_dtype,
                "--max-model-len",
                "2048",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
            d,
        )
    raise ValueError(f"unknown system {system!r}")


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/v1/models", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"server not ready within {timeout:.0f} s")


def rss_bytes(pid: int) -> int:
    import psutil

    proc = psutil.Process(pid)
    return int(proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True)))


async def soak(base: str, model: str, pid: int, seconds: float, concurrency: int, max_tokens: int) -> dict[str, Any]:
    """Run ``concurrency`` streams for ``seconds`` and sample the server's RSS every 5 s."""
    samples: list[tuple[float, int]] = []
    stop = time.perf_counter() + seconds
    done = 0

    async def sampler() -> None:
        while time.perf_counter() < stop:
            samples.append((round(time.perf_counter() - (stop - seconds), 1), rss_bytes(pid)))
            await asyncio.sleep(5)

    async def worker(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal done
        i = k
        while time.perf_counter() < stop:
            await one_request(
                session, base + "/v1/chat/completions", model, PROMPTS[i % len(PROMPTS)], max_tokens, True
            )
            done += 1
            i += concurrency

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        await asyncio.gather(sampler(), *(worker(session, k) for k in range(concurrency)))
    mib = [s[1] / 2**20 for s in samples]
    return {
        "seconds": seconds,
        "requests": done,
        "rss_mib_first": round(mib[0], 1),
        "rss_mib_last": round(mib[-1], 1),
        "rss_mib_max": round(max(mib), 1),
        "samples": [(t, round(b / 2**20, 1)) for t, b in samples],
    }


def raw_generate(args: argparse.Namespace, dtype: str | None = None) -> dict[str, Any]:
    """Latency of in-process ``model.generate`` (greedy, ``max_tokens`` new tokens) per prompt: the c=1 floor.

    ``dtype`` None: plain transformers in ``--dtype``; else the model as our server loads it with that ``--dtype``
    (``raw-auto``: float16 weights on an AVX2 CPU), so our concurrency-1 latency compares with the same weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    if dtype is None:
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype)).eval()
    else:
        from kaito.runtime.inference.model import load_model

        model = load_model(Path(args.model_dir), device="cpu", dtype=dtype).model
    times, tokens = [], 0
    for prompt in PROMPTS[: args.raw_prompts]:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=args.max_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
        times.append(time.perf_counter() - start)
        tokens += out.shape[1] - ids.shape[1]
    return {
        "latency_p50_s": round(statistics.median(times), 3),
        "tokens": tokens,
        "s_per_token": round(sum(times) / max(tokens, 1), 4),
    }


def plot(levels: list[Level], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for system in dict.fromkeys(lv.system for lv in levels):
        pts = [(lv.concurrency, lv.tok_s) for lv in levels if lv.system == system]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("output tokens/s")
    ax.set_title("SmolLM2-135M, 64 output tokens, greedy")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return True


def table(levels: list[Level]) -> str:
    rows = [
        "| system | concurrency | requests | errors | output tok/s | p50 latency s | p95 latency s | p50 TTFT s "
        "| load 1m |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        ttft = "" if lv.ttft_p50_s is None else f"{lv.ttft_p50_s:.2f}"
        rows.append(
            f"| {lv.system} | {lv.concurrency} | {lv.requests} | {lv.errors} | {lv.tok_s:.1f} | "
            f"{lv.latency_p50_s:.2f} | {lv.latency_p95_s:.2f} | {ttft} | {lv.loadavg_1m} |"
        )
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="raw,ours,sequential,tf-serve,vllm")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--rounds", type=int, default=3, help="requests per level = rounds x concurrency (min 4)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--stream", choices=["yes", "no"], default="yes", help="streaming measures TTFT too")
    p.add_argument("--model-dir", type=Path, default=None, help="default: the SmolLM2 preset directory")
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="sequential, tf-serve and raw"
    )
    p.add_argument("--ours-dtype", default="auto", choices=list(DTYPES), help="our server's --dtype")
    p.add_argument("--vllm-dtype", default="bfloat16")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for ours, sequential and raw (default: each one's own: ours cores - 1, the others all)",
    )
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--serve-python", default="/work/venvs/bench/bin/python")
    p.add_argument("--vllm-python", default="/work/venvs/vllm/bin/python")
    p.add_argument("--raw-prompts", type=int, default=3)
    p.add_argument("--soak-seconds", type=float, default=0.0, help="with ours: memory soak at concurrency 16")
    p.add_argument("--start-timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "inference-benchmark.png")
    p.add_argument("--report", type=Path, default=None, help="re-print the table and plot (--png) of a saved --out")
    args = p.parse_args()
    if args.report is not None:
        saved = [Level(**lv) for lv in json.loads(args.report.read_text())["levels"]]
        print(table(saved))
        if saved and plot(saved, args.png):
            print(f"plot: {args.png}")
        return 0
    if args.model_dir is None:
        from kaito.runtime.smollm2 import ensure_model_dir

        args.model_dir = ensure_model_dir()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "levels": [],
        "skipped": {},
    }
    levels: list[Level] = []
    for system in args.systems.split(","):
        name, dtype = split_system(system)
        if name == "raw":
            key = "raw_generate" if dtype is None else f"raw_generate_{dtype}"
            report[key] = raw_generate(args, dtype)
            print(f"{key}:", report[key], flush=True)
            continue
        port = free_port()
        try:
            argv, extra, model = command(system, args, port)
        except ValueError as exc:
            report["skipped"][system] = str(exc)
            continue
        if not Path(argv[0]).exists():
            report["skipped"][system] = f"{argv[0]} not installed"
            print(f"skip {system}: {argv[0]} not installed", flush=True)
            continue
        args.out.parent.mkdir(parents=True, exist_ok=True)
        log = open(args.out.parent / f"{system}.log", "wb")  # closed in finally
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra}, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}"
        try:
            t0 = time.perf_counter()
            wait_ready(base, proc, args.start_timeout)
            print(f"{system} ready in {time.perf_counter() - t0:.0f} s", flush=True)
            asyncio.run(run_level(base, system, model, 1, 1, args.max_tokens, False))  # warm-up
            for c in concurrency:
                level = asyncio.run(
                    run_level(base, system, model, c, max(4, args.rounds * c), args.max_tokens, args.stream == "yes")
                )
                levels.append(level)
                print(json.dumps(asdict(level)), flush=True)
            if system == "ours" and args.soak_seconds:
                report["soak"] = asyncio.run(soak(base, model, proc.pid, args.soak_seconds, 16, args.max_tokens))
                print("soak:", {k: v for k, v in report["soak"].items() if k != "samples"}, flush=True)
        except Exception as exc:
            report["skipped"][system] = repr(exc)
            print(f"{system} failed: {exc!r}", flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    report["levels"] = [asdict(lv) for lv in levels]
    report["loadavg_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2))
    print(table(levels))
    if levels and plot(levels, args.png):
        print(f"plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
