"""In-process profile of the inference runtime: ``model.generate`` vs ModelRunner decode vs the Engine.

All measurements run in ONE process, back to back, so a loaded machine affects them alike. It reports:

- ``generate``: ms per output token of ``model.generate`` (greedy, one sequence): the floor for concurrency 1;
- ``decode b=N``: ms per ModelRunner decode step with N sequences (each step yields N tokens);
- ``prefill b=N``: ms per ModelRunner prefill of N prompts of about 50 tokens;
- ``engine c=N``: the Engine end to end (asyncio front end + worker thread) with N concurrent requests of
  ``--max-tokens`` greedy tokens: output tokens/s and ms per decode step.

Example::

    python benchmarks/engine_profile.py --batches 1,4,16 --max-tokens 64

The load average (``os.getloadavg``) is printed before and after: compare figures only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

import torch

from kaito.runtime.inference.engine import Engine, EngineConfig
from kaito.runtime.inference.model import ModelRunner, load_model
from kaito.runtime.inference.sampling import SamplingParams

PROMPT = (
    "Explain in a few sentences why the sky looks blue during the day and turns red and orange at sunset, "
    "using simple words a curious ten year old child would understand."
)


def _chat_ids(tokenizer: Any, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def time_generate(loaded: Any, ids: list[int], tokens: int, reps: int) -> tuple[float, float]:
    """(wall, CPU) ms per output token of greedy ``model.generate`` for one sequence (medians of ``reps``),
    prefill included as in a served request."""
    model = loaded.model
    x = torch.tensor([ids])
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.thread_time()
        with torch.inference_mode():
            model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False
            )
        wall.append((time.perf_counter() - t0) * 1000 / tokens)
        cpu.append((time.thread_time() - c0) * 1000 / tokens)
    return statistics.median(wall), statistics.median(cpu)


def time_runner(runner: ModelRunner, ids: list[int], batch: int, steps: int) -> dict[str, float]:
    """Prefill ms and median decode ms per step (wall and this thread's CPU time) of ``batch`` prompt copies.

    The CPU time (``time.thread_time``) counts only the calling thread, so it is the whole cost with one torch
    thread and is far less sensitive to other processes than the wall time."""
    t0, c0 = time.perf_counter(), time.thread_time()
    logits = runner.prefill([ids] * batch, list(range(batch)), None)
    prefill, prefill_cpu = (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000
    toks = logits.argmax(-1).tolist()
    pos = [len(ids)] * batch
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.thread_time()
        logits = runner.decode(toks, pos, None)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        toks = logits.argmax(-1).tolist()
        pos = [p + 1 for p in pos]
    runner.cache.release_all()
    return {
        "prefill_ms": round(prefill, 1),
        "prefill_cpu_ms": round(prefill_cpu, 1),
        "decode_ms": round(statistics.median(wall), 1),
        "decode_cpu_ms": round(statistics.median(cpu), 1),
    }


async def time_engine(
    runner: ModelRunner, ids: list[int], conc: int, tokens: int, prefill_threads: int | None = None
) -> dict[str, float]:
    """Run ``conc`` concurrent greedy requests through an Engine (prefill on ``prefill_threads`` torch threads,
    None: the decode's); tokens/s and ms per step."""
    config = EngineConfig(
        max_batch_size=max(conc, 1),
        max_model_len=runner.cache.max_positions,
        threads=torch.get_num_threads(),
        prefill_threads=prefill_threads,
        prefix_cache_bytes=0,  # every request here has the same prompt: all but the first would be cache hits
    )
    engine = Engine(runner, config)
    engine.start()
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    ttfts: list[float] = []

    async def one() -> int:
        t0 = time.perf_counter()
        n = 0
        async for delta in engine.generate(ids, params):
            if n == 0:
                ttfts.append(time.perf_counter() - t0)
            n = delta.completion_tokens
        return n

    try:
        steps0 = engine.steps
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(one() for _ in range(conc)))
        wall = time.perf_counter() - t0
        steps = engine.steps - steps0
    finally:
        await engine.stop()
    return {
        "tok_s": round(sum(counts) / wall, 2),
        "ms_per_step": round(wall * 1000 / max(steps, 1), 1),
        "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 1),
    }


def main() -> None:
    """Parse flags, load the model, run every measurement and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed per batch size")
    parser.add_argument("--threads", default="1", help="comma list of torch thread counts, each measured in turn")
    parser.add_argument("--dtype", default="float32", help="as the server's --dtype (auto, float32, float16...)")
    parser.add_argument("--prefill-threads", type=int, default=None, help="engine prefill threads (default: same)")
    parser.add_argument("--skip", default="", help="comma list of generate,runner,engine to skip")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kaito.runtime.smollm2 import ensure_model_dir

    loaded = load_model(ensure_model_dir(), device="cpu", dtype=args.dtype)
    ids = _chat_ids(loaded.tokenizer, PROMPT)
    batches = [int(b) for b in args.batches.split(",")]
    skip = set(args.skip.split(","))
    runner = ModelRunner(loaded, max_slots=max(batches), max_positions=2048)
    print(json.dumps({"load_before": os.getloadavg(), "prompt_tokens": len(ids)}))
    time_runner(runner, ids, 1, 4)  # warm-up
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)  # this thread's; the engine sets its worker's from EngineConfig.threads
        tag = {"threads": threads, "dtype": args.dtype, "weights": loaded.weights}
        if "generate" not in skip:
            wall, cpu = time_generate(loaded, ids, args.max_tokens, 2)
            print(json.dumps({**tag, "generate_ms_per_token": round(wall, 1), "generate_cpu_ms": round(cpu, 1)}))
        if "runner" not in skip:
            for b in batches:
                print(json.dumps({**tag, "batch": b, **time_runner(runner, ids, b, args.steps)}))
        if "engine" not in skip:
            for c in batches:
                result = asyncio.run(time_engine(runner, ids, c, args.max_tokens, args.prefill_threads))
                print(json.dumps({**tag, "engine_concurrency": c, **result, "load_1m": os.getloadavg()[0]}))
    print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
