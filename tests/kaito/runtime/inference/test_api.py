"""The HTTP API on the tiny model (in-process aiohttp server on 127.0.0.1): shapes, streaming, /chat, errors,
client disconnects and metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import TinyServer

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8, "temperature": 0}


async def post(server: TinyServer, path: str, body: Any) -> tuple[int, Any]:
    resp = await server.client.post(path, data=body if isinstance(body, (str, bytes)) else json.dumps(body))
    return resp.status, await resp.json(content_type=None)


async def sse_events(server: TinyServer, path: str, body: dict[str, Any]) -> list[Any]:
    resp = await server.client.post(path, json=body)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for block in (await resp.text()).split("\n\n"):
        if block.strip():
            assert block.startswith("data: ")
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_chat_completion_has_the_openai_shape_and_usage(tiny_server: TinyServer) -> None:
    status, body = await post(tiny_server, "/v1/chat/completions", CHAT)
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 1 <= usage["completion_tokens"] <= 8


async def test_streamed_chat_equals_the_non_streamed_answer(tiny_server: TinyServer) -> None:
    _, whole = await post(tiny_server, "/v1/chat/completions", {**CHAT, "ignore_eos": True})
    events = await sse_events(
        tiny_server,
        "/v1/chat/completions",
        {**CHAT, "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finals] == ["length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


async def test_completions_streaming_and_not(tiny_server: TinyServer) -> None:
    body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "ignore_eos": True}
    status, whole = await post(tiny_server, "/v1/completions", body)
    assert status == 200 and whole["object"] == "text_completion"
    assert whole["usage"]["completion_tokens"] == 6 and whole["choices"][0]["finish_reason"] == "length"
    events = await sse_events(tiny_server, "/v1/completions", {**body, "stream": True})
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == whole["choices"][0]["text"]
    # token ids work as a prompt too
    ids = tiny_server.service.tokenize("Once upon a time")
    status, by_ids = await post(tiny_server, "/v1/completions", {**body, "prompt": ids})
    assert status == 200 and by_ids["choices"][0]["text"] == whole["choices"][0]["text"]


async def test_models_lists_the_base_model_and_each_adapter(tiny_server: TinyServer) -> None:
    resp = await tiny_server.client.get("/v1/models")
    body = await resp.json()
    assert [m["id"] for m in body["data"]] == ["tiny", "tiny-lora"]
    assert body["data"][1]["parent"] == "tiny"


async def test_health_and_healthz(tiny_server: TinyServer) -> None:
    for path in ("/health", "/healthz"):
        resp = await tiny_server.client.get(path)
        assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_seed_chat_contract(tiny_server: TinyServer) -> None:
    status, body = await post(
        tiny_server, "/chat", {"prompt": "Hello there", "generate_kwargs": {"max_new_tokens": 5, "do_sample": False}}
    )
    assert status == 200 and set(body) == {"Result"}
    assert body["Result"].startswith("Hello there") and len(body["Result"]) > len("Hello there")
    # messages: the assistant's reply only; the seed's defaults (sampling, max_length 200) apply
    status, body = await post(
        tiny_server,
        "/chat",
        {"messages": [{"role": "user", "content": "Hi"}], "generate_kwargs": {"max_new_tokens": 4, "seed": 3}},
    )
    assert status == 200 and isinstance(body["Result"], str) and "Hi" not in body["Result"][:2]
    generated = tiny_server.service.metrics.generation_tokens
    before = generated._value.get()
    status, body = await post(
        tiny_server, "/chat", {"prompt": "x", "generate_kwargs": {"max_length": 7, "do_sample": False}}
    )
    assert status == 200
    # max_length counts the prompt (transformers semantics): 1 prompt token + at most 6 new ones
    assert len(tiny_server.service.tokenize("x")) == 1
    assert 1 <= generated._value.get() - before <= 6


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/chat/completions", {"model": "tiny", "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"model": "tiny"}, 400, "messages"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": -5}, 400, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 10**9}, 400, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "temperature": 5}, 400, "temperature"),
        ("/v1/chat/completions", {**CHAT, "top_p": 0}, 400, "top_p"),
        ("/v1/chat/completions", {**CHAT, "n": 2}, 400, "n"),
        ("/v1/chat/completions", {**CHAT, "logprobs": True}, 400, "logprobs"),
        ("/v1/chat/completions", {**CHAT, "logit_bias": {"42": 100}}, 400, "logit_bias"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": "5"}, 400, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "stream": "yes"}, 400, "stream"),
        ("/chat", {"prompt": "x", "generate_kwargs": {"max_new_tokens": "3"}}, 400, "generate_kwargs.max_new_tokens"),
        ("/v1/chat/completions", {**CHAT, "stop": [""]}, 400, "stop"),
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": 5}]}, 400, "messages.0.content"),
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "messages.0.content.0.type",
        ),
        ("/v1/chat/completions", {**CHAT, "model": "gpt-4"}, 404, "model"),
        ("/v1/completions", {"model": "tiny", "prompt": ""}, 400, "prompt"),
        ("/v1/completions", {"model": "tiny", "prompt": ["a", "b"]}, 400, "prompt"),
        ("/v1/completions", {"model": "tiny", "prompt": [10**9]}, 400, "prompt"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "echo": True}, 400, "echo"),
        ("/chat", {"generate_kwargs": {}}, 400, "prompt"),
        ("/chat", {"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, 400, "prompt"),
        ("/chat", {"prompt": "x", "generate_kwargs": {"bogus": 1}}, 400, "generate_kwargs.bogus"),
        ("/chat", {"prompt": "x", "generate_kwargs": {"temperature": 0}}, 400, "generate_kwargs.temperature"),
        ("/chat", {"prompt": "one two three", "generate_kwargs": {"max_length": 2}}, 400, "generate_kwargs.max_length"),
        ("/chat", [1, 2], 400, None),
        ("/chat", {"prompt": "x", "generate_kwargs": {"stop_strings": ["", "a"]}}, 400, "generate_kwargs.stop_strings"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    tiny_server: TinyServer, path: str, body: Any, status: int, param: str | None
) -> None:
    got, answer = await post(tiny_server, path, body)
    assert got == status, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["message"]
    if status == 404:
        assert answer["error"]["code"] == "model_not_found" and "tiny-lora" in answer["error"]["message"]


async def test_prompt_longer_than_the_context_window_says_the_limit(tiny_server: TinyServer) -> None:
    status, body = await post(tiny_server, "/v1/completions", {"model": "tiny", "prompt": "word " * 400})
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded" and "128 tokens" in body["error"]["message"]


async def test_malformed_json_oversized_body_and_unknown_paths(tiny_server: TinyServer) -> None:
    status, body = await post(tiny_server, "/v1/chat/completions", "{not json")
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = await post(tiny_server, "/v1/chat/completions", b"x" * (65 * 1024))
    assert status == 413 and "65536 bytes" in body["error"]["message"]
    resp = await tiny_server.client.get("/v2/nothing")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await tiny_server.client.get("/v1/chat/completions")
    assert resp.status == 405


@pytest.mark.parametrize("path", ["/chat", "/v1/completions", "/v1/chat/completions"])
async def test_a_lone_surrogate_is_a_400_not_a_500(tiny_server: TinyServer, path: str) -> None:
    # valid JSON ("\ud800" is a legal escape) that is not valid Unicode: the tokenizer cannot take it
    text = '"\\ud800 hi"'
    raw = {"/chat": '{"prompt": %s, "generate_kwargs": {"max_new_tokens": 2}}',
           "/v1/completions": '{"model": "tiny", "max_tokens": 2, "prompt": %s}',
           "/v1/chat/completions": '{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": %s}]}',
           }[path] % text
    status, body = await post(tiny_server, path, raw)
    assert status == 400 and "surrogate" in body["error"]["message"], body
    # a proper surrogate pair (an emoji) is fine
    status, _ = await post(tiny_server, path, raw.replace("\\ud800", "\\ud83d\\ude00"))
    assert status == 200


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    """Poll observable state until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("stream", [True, False])
async def test_client_disconnect_cancels_the_sequence(tiny_server: TinyServer, stream: bool) -> None:
    engine, metrics = tiny_server.engine, tiny_server.service.metrics
    tiny_server.runner.decode_gate.clear()  # hold the sequence in the batch after its first token
    body = {**CHAT, "max_tokens": 60, "ignore_eos": True, "stream": stream}
    request = asyncio.ensure_future(tiny_server.client.post("/v1/chat/completions", json=body))
    if stream:
        resp = await request
        assert resp.status == 200
        await resp.content.readline()  # the first chunk arrived
        resp.close()  # drop the connection mid-stream
    else:
        await wait_for(lambda: engine.num_running == 1)
        request.cancel()  # the client gives up and closes its connection
    gone = metrics.requests.labels(endpoint="/v1/chat/completions", status="499")
    await wait_for(lambda: gone._value.get() == 1)
    tiny_server.runner.decode_gate.set()
    await wait_for(lambda: engine.num_running == 0)
    assert metrics.finished.labels(reason="cancelled")._value.get() == 1
    assert metrics.generation_tokens._value.get() < 10


async def test_metrics_are_valid_prometheus_text_and_count_requests(tiny_server: TinyServer) -> None:
    await post(tiny_server, "/v1/chat/completions", {**CHAT, "ignore_eos": True})
    await post(tiny_server, "/v1/chat/completions", {**CHAT, "model": "nope"})
    resp = await tiny_server.client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    ok = ("kaito_inference_requests_total", (("endpoint", "/v1/chat/completions"), ("status", "200")))
    missing = ("kaito_inference_requests_total", (("endpoint", "/v1/chat/completions"), ("status", "404")))
    assert samples[ok] == 1 and samples[missing] == 1
    assert samples[("kaito_inference_generation_tokens_total", ())] == 8
    assert samples[("kaito_inference_prompt_tokens_total", ())] > 0
    assert samples[("kaito_inference_time_to_first_token_seconds_count", ())] == 1
    assert samples[("kaito_inference_time_per_output_token_seconds_count", ())] == 1
    for name in (
        "kaito_inference_requests_running",
        "kaito_inference_requests_waiting",
        "kaito_inference_kv_cache_bytes",
        "kaito_inference_batch_size",
        "kaito_inference_request_duration_seconds",
    ):
        assert name in families


async def test_a_full_queue_answers_429_rate_limit_exceeded(tiny_server: TinyServer) -> None:
    engine, runner = tiny_server.engine, tiny_server.runner
    runner.prefill_gate.clear()  # the first request stays in its prefill; the rest queue behind it
    body = {**CHAT, "max_tokens": 2, "ignore_eos": True}
    first = asyncio.ensure_future(post(tiny_server, "/v1/chat/completions", body))
    await wait_for(runner.in_prefill.is_set)
    limit = engine.config.max_waiting
    queued = [asyncio.ensure_future(post(tiny_server, "/v1/chat/completions", body)) for _ in range(limit)]
    await wait_for(lambda: engine.num_waiting == limit)
    status, answer = await post(tiny_server, "/v1/chat/completions", body)
    assert status == 429
    assert answer["error"]["type"] == "rate_limit_exceeded" and answer["error"]["code"] == "rate_limit_exceeded"
    runner.prefill_gate.set()
    results = await asyncio.gather(first, *queued)
    assert [s for s, _ in results] == [200] * (limit + 1)
