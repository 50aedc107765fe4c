"""Property: no user input makes the server answer 5xx. Hypothesis sends arbitrary JSON and valid requests with
one field replaced by arbitrary JSON to every POST endpoint of a tiny-model server; every answer must be a 2xx or
4xx with a JSON body, and every 4xx must carry an OpenAI-style error message."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaito.runtime.inference.api import create_app

from .conftest import build_service

VALID = {
    "/v1/chat/completions": {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 1,
        "stream": False,
    },
    "/v1/completions": {"model": "tiny", "prompt": "hello", "max_tokens": 4, "temperature": 0, "stream": False},
    "/chat": {"prompt": "hello", "generate_kwargs": {"max_new_tokens": 4, "top_k": 5, "do_sample": True}},
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    path = draw(st.sampled_from(sorted(VALID)))
    body: Any = json.loads(json.dumps(VALID[path]))
    kind = draw(st.sampled_from(["replace", "drop", "nested", "whole"]))
    if kind == "whole":
        return path, draw(json_values)
    key = draw(st.sampled_from(sorted(body)))
    if kind == "drop":
        body.pop(key)
    elif kind == "nested" and isinstance(body[key], (dict, list)):
        target = body[key][0] if isinstance(body[key], list) and body[key] else body[key]
        if isinstance(target, dict) and target:
            target[draw(st.sampled_from(sorted(target)))] = draw(json_values)
    else:
        body[key] = draw(json_values)
    return path, body


@pytest.fixture(scope="module")
def server_port(tiny_model_dir: Path) -> Iterator[int]:
    """The tiny-model app on 127.0.0.1 in a background thread with its own event loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        service = build_service(tiny_model_dir, max_model_len=64, max_waiting=4)
        runner = web.AppRunner(create_app(service, max_body_bytes=16 * 1024), handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(120), "fuzz server did not start"
    yield int(state["port"])
    asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(60)


def send(port: int, path: str, body: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        raw = json.dumps(body) if not isinstance(body, bytes) else body
        conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read().decode()
        if resp.getheader("Content-Type", "").startswith("text/event-stream"):
            return resp.status, data
        return resp.status, json.loads(data)
    finally:
        conn.close()


def check(status: int, answer: Any) -> None:
    assert status < 500, answer
    if status >= 400:
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_no_user_input_causes_a_server_error(server_port: int, case: tuple[str, Any]) -> None:
    path, body = case
    check(*send(server_port, path, body))


@settings(max_examples=40, deadline=None)
@given(path=st.sampled_from(sorted(VALID)), raw=st.binary(max_size=200))
def test_arbitrary_bytes_are_a_400_not_a_crash(server_port: int, path: str, raw: bytes) -> None:
    status, answer = send(server_port, path, raw)
    check(status, answer)
