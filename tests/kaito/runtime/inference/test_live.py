"""The real server (``python -m kaito.runtime.inference`` on SmolLM2-135M-Instruct, a subprocess shared by the
session) driven by the real ``openai`` client over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import LiveServer, post_json

# the first test also pays for starting the shared server (model load, adapters) on a possibly busy machine
pytestmark = [pytest.mark.slow, pytest.mark.model, pytest.mark.timeout(900)]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPTS = ["What is the capital of France?", "Name three colors.", "Write a haiku about the sea.", "What is 2+2?"]


def client(server: LiveServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=280)


async def greedy(c: openai.AsyncOpenAI, model: str, text: str, max_tokens: int = 12) -> str:
    answer = await c.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0
    )
    return answer.choices[0].message.content or ""


async def test_openai_client_chat_streaming_and_not(live_server: LiveServer) -> None:
    c = client(live_server)
    answer = await c.chat.completions.create(
        model=live_server.base_model, messages=QUESTION, max_tokens=16, temperature=0
    )
    text = answer.choices[0].message.content or ""
    assert text.strip()
    assert answer.usage is not None and answer.usage.completion_tokens <= 16
    stream = await c.chat.completions.create(
        model=live_server.base_model,
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == text
    assert usage is not None and usage.completion_tokens == answer.usage.completion_tokens


async def test_openai_client_completions(live_server: LiveServer) -> None:
    # the base name serves all adapters combined (upstream's behaviour), so assert the contract, not the content
    c = client(live_server)
    plain = await c.completions.create(model=live_server.base_model, prompt="1, 2, 3, 4,", max_tokens=6, temperature=0)
    assert plain.choices[0].finish_reason in ("stop", "length") and plain.usage is not None
    assert 1 <= plain.usage.completion_tokens <= 6
    text = plain.choices[0].text
    if len(text) > 2:
        stop = text[1:3]
        cut = await c.completions.create(
            model=live_server.base_model, prompt="1, 2, 3, 4,", max_tokens=6, temperature=0, stop=[stop]
        )
        assert cut.choices[0].text == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"


async def test_greedy_output_is_the_same_alone_and_batched(live_server: LiveServer) -> None:
    c = client(live_server)
    alone = [await greedy(c, live_server.base_model, p) for p in PROMPTS]
    together = await asyncio.gather(*(greedy(c, live_server.base_model, p) for p in PROMPTS))
    assert list(together) == alone


async def test_each_adapter_is_selectable_per_request(live_server: LiveServer) -> None:
    c = client(live_server)
    models = [m.id async for m in c.models.list()]
    assert models == [live_server.base_model, "lora-a", "lora-b"]
    outputs = await asyncio.gather(*(greedy(c, m, PROMPTS[0], 8) for m in models))
    assert len(set(outputs)) == 3, outputs


async def test_seed_chat_endpoint(live_server: LiveServer) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await post_json(
            s,
            live_server.url + "/chat",
            {"prompt": "The capital of France is", "generate_kwargs": {"max_new_tokens": 5, "do_sample": False}},
        )
    assert status == 200
    assert body["Result"].startswith("The capital of France is") and len(body["Result"]) > len(
        "The capital of France is"
    )


async def test_errors_reach_the_openai_client_as_its_exceptions(live_server: LiveServer) -> None:
    c = client(live_server)
    with pytest.raises(openai.NotFoundError, match="lora-a"):
        await c.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=4)
    with pytest.raises(openai.BadRequestError) as info:
        await c.chat.completions.create(model=live_server.base_model, messages=QUESTION, max_tokens=0)
    assert info.value.body["param"] == "max_tokens"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="context window is 1024 tokens"):
        await c.completions.create(model=live_server.base_model, prompt="hello " * 2000, max_tokens=4)


async def test_metrics_are_parseable_and_count_the_traffic(live_server: LiveServer) -> None:
    c = client(live_server)
    await greedy(c, live_server.base_model, "Hi", 3)
    async with aiohttp.ClientSession() as s, s.get(live_server.url + "/metrics") as resp:
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ok = [
        s
        for s in families["kaito_inference_requests"].samples
        if s.name.endswith("_total") and s.labels == {"endpoint": "/v1/chat/completions", "status": "200"}
    ]
    assert ok and ok[0].value >= 1
    assert families["kaito_inference_generation_tokens"].samples[0].value >= 1
    assert "kaito_inference_time_to_first_token_seconds" in families
