"""Prefix caching: prompts that share a beginning reuse its keys and values, and the answers do not change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import torch

from kaito.runtime.inference.prefix_cache import BLOCK_TOKENS, PrefixCache, common_prefix_length
from kaito.runtime.inference.sampling import SamplingParams
from kaito.runtime.inference.serving import Service

from .conftest import build_service
from .test_engine import output_ids, run

SYSTEM = (
    "You are a careful assistant for a Kubernetes platform team. Answer briefly, name the resource kinds "
    "involved, and never invent flags that kubectl does not have. Question: "
)
QUESTIONS = ["how do I scale a deployment?", "what is a finalizer?", "why is my pod pending?", "what is RBAC?"]


def kv(value: float) -> torch.Tensor:
    return torch.full((2, 2, 1, BLOCK_TOKENS, 4), value)


def test_a_lookup_returns_the_longest_stored_chain_but_never_the_last_token() -> None:
    cache = PrefixCache(capacity_bytes=10 * 2**20, bytes_per_token=64)
    prompt = list(range(3 * BLOCK_TOKENS))
    assert cache.match(prompt, None) == []
    assert cache.store(prompt, None, lambda start, end: kv(start)) == 3
    # the whole prompt is stored, but a lookup of the same prompt leaves its last block to compute (its last
    # token must run to give logits)
    assert [float(b.kv[0, 0, 0, 0, 0]) for b in cache.match(prompt, None)] == [0.0, float(BLOCK_TOKENS)]
    assert len(cache.match([*prompt, 7], None)) == 3
    # a different token inside block 2 ends the chain there; another adapter shares nothing
    changed = [*prompt[:BLOCK_TOKENS], 999, *prompt[BLOCK_TOKENS + 1 :], 1]
    assert len(cache.match(changed, None)) == 1
    assert cache.match([*prompt, 7], "my-adapter") == []
    assert cache.store(prompt, None, lambda start, end: kv(-1)) == 0  # already held: not read again


def test_least_recently_used_blocks_leave_first_when_the_capacity_is_reached() -> None:
    cache = PrefixCache(capacity_bytes=2 * BLOCK_TOKENS * 64, bytes_per_token=64)  # room for two blocks
    a, b = [1] * (BLOCK_TOKENS + 1), [2] * (BLOCK_TOKENS + 1)
    cache.store(a, None, lambda s, e: kv(1))
    cache.store(b, None, lambda s, e: kv(2))
    assert len(cache.match(a, None)) == 1  # a is now the most recently used
    cache.store([3] * (BLOCK_TOKENS + 1), None, lambda s, e: kv(3))
    assert cache.used_bytes == 2 * BLOCK_TOKENS * 64
    assert len(cache.match(a, None)) == 1 and cache.match(b, None) == []
    assert not PrefixCache(capacity_bytes=0, bytes_per_token=64).enabled


def test_common_prefix_length() -> None:
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5, 6], [5, 6]]) == 2
    assert common_prefix_length([[1], [2]]) == 0


async def answers(svc: Service, prompts: list[str], *, together: bool, adapter: str | None = None) -> list[str]:
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)
    if together:
        results = await asyncio.gather(*(run(svc.engine, svc.tokenize(p), params, adapter) for p in prompts))
        return [output_ids(svc, r) for r in results]
    return [output_ids(svc, await run(svc.engine, svc.tokenize(p), params, adapter)) for p in prompts]


async def test_shared_prefixes_are_reused_and_greedy_answers_do_not_change(tiny_model_dir: Path) -> None:
    prompts = [SYSTEM + q for q in QUESTIONS]
    plain = build_service(tiny_model_dir, prefix_cache_bytes=0)
    cached = build_service(tiny_model_dir)
    plain.engine.start()
    cached.engine.start()
    try:
        want = await answers(plain, prompts, together=False)
        # a burst on a cold cache: the shared system prompt is computed once and reused by the others (by all
        # four when they arrive in one step: it is prefilled first on its own; else the first one stores it)
        assert await answers(cached, prompts, together=True) == want
        shared = common_prefix_length([cached.tokenize(p) for p in prompts]) // BLOCK_TOKENS * BLOCK_TOKENS
        assert shared >= 2 * BLOCK_TOKENS
        assert cached.engine.prefix_cache.hit_tokens >= 3 * shared
        # later requests, one at a time, hit the stored blocks (their own full blocks too)
        hits = cached.engine.prefix_cache.hit_tokens
        assert await answers(cached, prompts, together=False) == want
        assert cached.engine.prefix_cache.hit_tokens >= hits + 4 * shared
        assert plain.engine.prefix_cache.hit_tokens == 0
        metrics = cached.metrics.registry.get_sample_value("kaito_inference_prefix_cache_hit_tokens_total")
        assert metrics == cached.engine.prefix_cache.hit_tokens
    finally:
        await plain.engine.stop()
        await cached.engine.stop()


async def test_a_chunked_long_prompt_starts_after_its_cached_prefix(tiny_model_dir: Path) -> None:
    prompts = [SYSTEM * 2 + q for q in QUESTIONS[:2]]  # over prefill_chunk_tokens: prefilled alone, in chunks
    plain = build_service(tiny_model_dir, prefix_cache_bytes=0, prefill_chunk_tokens=24)
    cached = build_service(tiny_model_dir, prefill_chunk_tokens=24)
    plain.engine.start()
    cached.engine.start()
    try:
        want = await answers(plain, prompts, together=False)
        assert await answers(cached, prompts, together=False) == want
        assert cached.engine.prefix_cache.hit_tokens >= 4 * BLOCK_TOKENS  # the second reused the first's prefix
    finally:
        await plain.engine.stop()
        await cached.engine.stop()


async def test_a_prefix_cached_without_an_adapter_is_not_used_with_one(
    tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    prompts = [SYSTEM + q for q in QUESTIONS[:2]]
    plain = build_service(tiny_model_dir, adapter_dir=tiny_adapter_dir, prefix_cache_bytes=0)
    cached = build_service(tiny_model_dir, adapter_dir=tiny_adapter_dir)
    plain.engine.start()
    cached.engine.start()
    try:
        base = await answers(cached, prompts, together=False)
        hits = cached.engine.prefix_cache.hit_tokens
        with_adapter = await answers(cached, prompts[:1], together=False, adapter="tiny-lora")
        assert cached.engine.prefix_cache.hit_tokens == hits  # nothing reused across adapters
        assert with_adapter == await answers(plain, prompts[:1], together=False, adapter="tiny-lora")
        assert with_adapter != base[:1]
    finally:
        await plain.engine.stop()
        await cached.engine.stop()
