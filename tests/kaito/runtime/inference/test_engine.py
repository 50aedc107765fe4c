"""The continuous-batching engine on the tiny model: correctness against transformers, batch invariance of greedy
output, joining/leaving between steps, stop conditions, seeds, cancellation, timeouts and the bounded queue."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch

from kaito.runtime.inference.engine import Engine
from kaito.runtime.inference.errors import APIError
from kaito.runtime.inference.model import ModelRunner
from kaito.runtime.inference.sampling import SamplingParams
from kaito.runtime.inference.sequence import Delta
from kaito.runtime.inference.serving import Service

from .conftest import FakeClock, GatedRunner, build_service

PROMPTS = [
    "The quick brown fox",
    "Once upon a time in a land far away, there lived",
    "1 2 3",
    "Kubernetes operators reconcile the desired state of custom resources with the world",
]


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    """Poll observable state until ``predicate()`` is true (fails after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def run(engine: Engine, ids: list[int], params: SamplingParams, adapter: str | None = None) -> list[Delta]:
    return [d async for d in engine.generate(ids, params, adapter)]


@pytest.fixture
async def service(tiny_model_dir: Path) -> Any:
    svc = build_service(tiny_model_dir)
    svc.engine.start()
    yield svc
    await svc.engine.stop()


def ids_of(service: Service, text: str) -> list[int]:
    return service.tokenize(text)


def output_ids(service: Service, deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


async def test_greedy_output_matches_transformers_generate(service: Service) -> None:
    model = service.engine.runner.loaded.model
    for prompt in PROMPTS:
        ids = ids_of(service, prompt)
        deltas = await run(service.engine, ids, SamplingParams(max_tokens=12, temperature=0.0))
        with torch.inference_mode():
            ref = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :].tolist()
        if 2 in ref:
            ref = ref[: ref.index(2)]
        assert "".join(d.text for d in deltas) == service.tokenizer.decode(ref, skip_special_tokens=True)
        assert deltas[-1].completion_tokens == len(ref)


async def test_greedy_output_is_identical_alone_and_in_a_batch(service: Service) -> None:
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    alone = [await run(service.engine, ids_of(service, p), params) for p in PROMPTS]
    # all at once, plus staggered arrivals so sequences join a running batch between decode steps
    together = await asyncio.gather(*(run(service.engine, ids_of(service, p), params) for p in PROMPTS))
    assert [output_ids(service, d) for d in together] == [output_ids(service, d) for d in alone]

    async def late(i: int) -> list[Delta]:
        await wait_for(lambda: service.engine.steps >= start + 3 * i)
        return await run(service.engine, ids_of(service, PROMPTS[i]), params)

    start = service.engine.steps
    staggered = await asyncio.gather(*(late(i) for i in range(len(PROMPTS))))
    assert [output_ids(service, d) for d in staggered] == [output_ids(service, d) for d in alone]
    assert all(d[-1].completion_tokens == 24 and d[-1].finish_reason == "length" for d in staggered)


async def test_requests_join_and_leave_between_decode_steps(service: Service) -> None:
    engine = service.engine
    long = asyncio.ensure_future(
        run(engine, ids_of(service, "a b c"), SamplingParams(max_tokens=120, temperature=0, ignore_eos=True))
    )
    await wait_for(lambda: engine.num_running == 1)
    short = await run(engine, ids_of(service, "x y"), SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    # the short request finished while the long one was still running: it joined the batch and left it early
    assert short[-1].completion_tokens == 3
    assert not long.done()
    assert (await long)[-1].completion_tokens == 120
    await wait_for(lambda: engine.num_running == 0)


async def test_max_tokens_and_stop_strings_end_generation(service: Service) -> None:
    ids = ids_of(service, PROMPTS[1])
    free = await run(service.engine, ids, SamplingParams(max_tokens=30, temperature=0, ignore_eos=True))
    text = output_ids(service, free)
    assert free[-1].finish_reason == "length" and free[-1].completion_tokens == 30
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    stopped = await run(
        service.engine, ids, SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, stop=(stop,))
    )
    assert stopped[-1].finish_reason == "stop"
    assert output_ids(service, stopped) == text[: text.index(stop)]


async def test_seeded_sampling_is_reproducible_and_seeds_differ(service: Service) -> None:
    ids = ids_of(service, PROMPTS[0])

    def params(seed: int) -> SamplingParams:
        return SamplingParams(max_tokens=16, temperature=1.0, seed=seed, ignore_eos=True)

    first, again, other = await asyncio.gather(
        run(service.engine, ids, params(1)), run(service.engine, ids, params(1)), run(service.engine, ids, params(2))
    )
    assert output_ids(service, first) == output_ids(service, again)
    assert output_ids(service, first) != output_ids(service, other)


async def test_closing_the_stream_cancels_the_sequence(service: Service) -> None:
    engine = service.engine
    agen = engine.generate(ids_of(service, "hello"), SamplingParams(max_tokens=200, temperature=0, ignore_eos=True))
    await anext(agen)
    assert engine.num_running == 1
    await agen.aclose()
    await wait_for(lambda: engine.num_running == 0)
    assert service.metrics.finished.labels(reason="cancelled")._value.get() == 1


async def test_request_timeout_ends_the_sequence(tiny_model_dir: Path) -> None:
    clock = FakeClock()
    svc = build_service(tiny_model_dir, request_timeout=5.0, clock=clock)
    svc.engine.start()
    try:
        agen = svc.engine.generate(svc.tokenize("hi"), SamplingParams(max_tokens=100, temperature=0, ignore_eos=True))
        first = await anext(agen)
        assert first.finish_reason is None
        clock.advance(6.0)
        rest = [d async for d in agen]
        assert rest[-1].finish_reason == "timeout"
        assert rest[-1].completion_tokens < 100
    finally:
        await svc.engine.stop()


LONG_PROMPT = " ".join(PROMPTS * 2)  # ~60 tokens: many chunks of 8


async def test_a_long_prompt_prefilled_in_chunks_gives_the_same_greedy_output(tiny_model_dir: Path) -> None:
    whole = build_service(tiny_model_dir)  # prefill_chunk_tokens 512 > the 128-token window: one pass
    chunked = build_service(tiny_model_dir, prefill_chunk_tokens=8)
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)
    ids = whole.tokenize(LONG_PROMPT)
    assert len(ids) > 4 * 8
    for svc in (whole, chunked):
        svc.engine.start()
    try:
        reference = output_ids(whole, await run(whole.engine, ids, params))
        # alone, and with short requests decoding beside it (the long prompt is admitted on its own)
        assert output_ids(chunked, await run(chunked.engine, ids, params)) == reference
        together = await asyncio.gather(
            run(chunked.engine, ids, params), *(run(chunked.engine, chunked.tokenize(p), params) for p in PROMPTS[:2])
        )
        assert output_ids(chunked, together[0]) == reference
        assert [output_ids(chunked, d) for d in together[1:]] == [
            output_ids(whole, await run(whole.engine, whole.tokenize(p), params)) for p in PROMPTS[:2]
        ]
    finally:
        for svc in (whole, chunked):
            await svc.engine.stop()


async def test_a_long_prompt_times_out_between_prefill_chunks(tiny_model_dir: Path) -> None:
    clock = FakeClock()
    svc = build_service(tiny_model_dir, request_timeout=5.0, clock=clock, prefill_chunk_tokens=8)
    runner = svc.engine.runner
    forward = runner._forward
    passes: list[int] = []

    def slow_forward(*args: Any) -> torch.Tensor:
        passes.append(1)
        clock.advance(6.0)  # each chunk "takes" longer than the whole request may
        return forward(*args)

    runner._forward = slow_forward  # type: ignore[method-assign]
    svc.engine.start()
    try:
        deltas = await run(svc.engine, svc.tokenize(LONG_PROMPT), SamplingParams(max_tokens=4, temperature=0))
        assert deltas[-1].finish_reason == "timeout" and deltas[-1].completion_tokens == 0
        assert len(passes) == 1  # the remaining chunks never ran
        # the engine keeps serving
        runner._forward = forward  # type: ignore[method-assign]
        ok = await run(svc.engine, svc.tokenize("hi"), SamplingParams(max_tokens=2, temperature=0, ignore_eos=True))
        assert ok[-1].finish_reason == "length"
    finally:
        await svc.engine.stop()


async def test_the_worker_runs_the_model_with_the_configured_torch_threads(tiny_model_dir: Path) -> None:
    # OpenMP's thread count is per thread: the worker must set its own, whatever the starting thread has
    wanted = 2 if torch.get_num_threads() == 1 else 1
    seen: list[int] = []

    class Recording(GatedRunner):
        def decode(self, *args: Any) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return super().decode(*args)

    svc = build_service(tiny_model_dir, runner_wrapper=Recording, threads=wanted)
    svc.engine.start()
    try:
        await run(svc.engine, svc.tokenize("hi"), SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    finally:
        await svc.engine.stop()
    assert seen and set(seen) == {wanted}


async def test_full_waiting_queue_answers_429_and_recovers(tiny_model_dir: Path) -> None:
    runner: list[GatedRunner] = []

    def wrap(inner: ModelRunner) -> GatedRunner:
        runner.append(GatedRunner(inner))
        runner[0].prefill_gate.clear()
        return runner[0]

    svc = build_service(tiny_model_dir, max_batch_size=1, max_waiting=2, runner_wrapper=wrap)
    svc.engine.start()
    try:
        params = SamplingParams(max_tokens=2, temperature=0, ignore_eos=True)
        ids = svc.tokenize("x")
        first = asyncio.ensure_future(run(svc.engine, ids, params))
        await wait_for(runner[0].in_prefill.is_set)
        queued = [asyncio.ensure_future(run(svc.engine, ids, params)) for _ in range(2)]
        await wait_for(lambda: svc.engine.num_waiting == 2)
        with pytest.raises(APIError) as info:
            await run(svc.engine, ids, params)
        assert info.value.status == 429 and info.value.type == "rate_limit_exceeded"
        runner[0].prefill_gate.set()
        results = await asyncio.gather(first, *queued)
        assert all(r[-1].completion_tokens == 2 for r in results)
        assert (await run(svc.engine, ids, params))[-1].finish_reason == "length"
    finally:
        runner[0].prefill_gate.set()
        await svc.engine.stop()


async def test_adapter_changes_output_per_request_in_a_mixed_batch(
    tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    plain = build_service(tiny_model_dir)
    svc = build_service(tiny_model_dir, adapter_dir=tiny_adapter_dir)
    plain.engine.start()
    svc.engine.start()
    try:
        params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)
        ids = svc.tokenize(PROMPTS[1])
        base = output_ids(svc, await run(plain.engine, ids, params))
        alone = output_ids(svc, await run(svc.engine, ids, params, "tiny-lora"))
        mixed = await asyncio.gather(
            run(svc.engine, ids, params, "tiny-lora"),
            run(svc.engine, ids, params, "__base__"),
        )
        assert alone != base
        assert output_ids(svc, mixed[0]) == alone
        assert output_ids(svc, mixed[1]) == base
    finally:
        await plain.engine.stop()
        await svc.engine.stop()


async def test_prefill_runs_on_the_prefill_threads_and_decode_on_its_own(tiny_model_dir: Path) -> None:
    # prefill is compute bound and may borrow the event loop's core; decode goes back to its own count after
    decode_threads = 2 if torch.get_num_threads() == 1 else 1
    prefill_threads = 3
    seen: dict[str, set[int]] = {"prefill": set(), "decode": set()}

    class Recording(GatedRunner):
        def prefill(self, *args: Any) -> torch.Tensor:
            seen["prefill"].add(torch.get_num_threads())
            return super().prefill(*args)

        def decode(self, *args: Any) -> torch.Tensor:
            seen["decode"].add(torch.get_num_threads())
            return super().decode(*args)

    svc = build_service(
        tiny_model_dir, runner_wrapper=Recording, threads=decode_threads, prefill_threads=prefill_threads
    )
    svc.engine.start()
    try:
        params = SamplingParams(max_tokens=3, temperature=0, ignore_eos=True)
        for _ in range(2):
            await run(svc.engine, svc.tokenize("hi"), params)
    finally:
        await svc.engine.stop()
    assert seen == {"prefill": {prefill_threads}, "decode": {decode_threads}}
