"""The HTTP API (aiohttp): OpenAI ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, the seed's
``/chat``, ``/health`` (``/healthz``) and ``/metrics``.

Every error is JSON in OpenAI's shape (see :mod:`kaito.runtime.inference.errors`); user input never produces a
500. Streaming answers are Server-Sent Events: one ``data: {json}`` line per chunk and ``data: [DONE]`` at the
end; an error after the stream started (timeout) is sent as a ``data: {"error": ...}`` chunk, which the
``openai`` client raises as an ``APIError``. A client that disconnects cancels its sequence in the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kaito.runtime.inference.errors import APIError, EngineStoppedError, bad_request, timed_out
from kaito.runtime.inference.protocol import ChatCompletionRequest, ChatRequest, CompletionRequest, parse
from kaito.runtime.inference.sequence import Delta
from kaito.runtime.inference.serving import Prepared, Service

log = structlog.get_logger("kaito.runtime.inference.api")

SERVICE: web.AppKey[Service] = web.AppKey("service", Service)
MAX_BODY: web.AppKey[int] = web.AppKey("max_body_bytes", int)
_KNOWN = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/chat", "/health", "/healthz", "/metrics"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _error_response(err: APIError) -> web.Response:
    return _json(err.status, err.body())


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    service = request.app[SERVICE]
    endpoint = request.path if request.path in _KNOWN else "other"
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except APIError as err:
        status = err.status
        return _error_response(err)
    except web.HTTPRequestEntityTooLarge:
        status = 413
        limit = request.app[MAX_BODY]
        return _error_response(
            APIError(413, f"the request body exceeds the server's limit of {limit} bytes", code="body_too_large")
        )
    except web.HTTPException as exc:
        status = exc.status
        if exc.status == 404:
            return _error_response(APIError(404, f"no endpoint {request.method} {request.path}", code="not_found"))
        if exc.status == 405:
            return _error_response(APIError(405, f"{request.method} is not allowed on {request.path}"))
        raise
    except asyncio.CancelledError:
        status = 499  # the client closed the connection (nginx's convention); its sequence is cancelled
        raise
    except EngineStoppedError as exc:
        status = 503
        return _error_response(APIError(503, str(exc), type="server_error", code="engine_stopped"))
    finally:
        service.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
        service.metrics.request_latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    if b"\\u" in raw:  # JSON allows "\ud800" escapes that decode to lone surrogates, which are not text
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise bad_request(
                f"the request body contains an unpaired UTF-16 surrogate ({exc.object[exc.start]!r}): every "
                "\\uD800-\\uDFFF escape must be half of a surrogate pair; send valid Unicode text"
            ) from None
    return body


def _finish_error(delta: Delta, service: Service) -> APIError | None:
    if delta.finish_reason == "timeout":
        return timed_out(service.engine.config.request_timeout)
    if delta.finish_reason in ("error", "cancelled"):
        return APIError(503, delta.error or "the request was aborted", type="server_error", code="engine_error")
    return None


async def _collect(service: Service, prep: Prepared) -> tuple[str, Delta]:
    parts: list[str] = []
    async with contextlib.aclosing(service.engine.generate(prep.prompt_ids, prep.params, prep.adapter)) as agen:
        async for delta in agen:
            parts.append(delta.text)
            if delta.finish_reason is not None:
                err = _finish_error(delta, service)
                if err:
                    raise err
                return "".join(parts), delta
    raise APIError(503, "the engine ended the request without a result", type="server_error")


def _usage(delta: Delta) -> dict[str, int]:
    return {
        "prompt_tokens": delta.prompt_tokens,
        "completion_tokens": delta.completion_tokens,
        "total_tokens": delta.prompt_tokens + delta.completion_tokens,
    }


def _log_done(service: Service, endpoint: str, prep: Prepared, delta: Delta, start: float, text: str = "") -> None:
    extra = {"prompt_ids": len(prep.prompt_ids), "output": text} if service.log_prompts else {}
    log.info(
        "request_finished",
        endpoint=endpoint,
        model=prep.model,
        prompt_tokens=delta.prompt_tokens,
        completion_tokens=delta.completion_tokens,
        finish_reason=delta.finish_reason,
        duration_s=round(time.perf_counter() - start, 4),
        **extra,
    )


async def _sse(
    request: web.Request, service: Service, prep: Prepared, chunk: Callable[[Delta, bool], list[dict[str, Any]]]
) -> web.StreamResponse:
    """Stream ``chunk(delta, first)`` results as SSE; the first delta is awaited before the headers are sent so
    that a 429 is still an HTTP status."""
    start = time.perf_counter()
    agen = service.engine.generate(prep.prompt_ids, prep.params, prep.adapter)
    async with contextlib.aclosing(agen):
        first: Delta = await anext(agen)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        async def deltas() -> AsyncIterator[Delta]:
            yield first
            async for d in agen:
                yield d

        is_first = True
        async for delta in deltas():
            err = _finish_error(delta, service)
            if err is not None:
                await send(err.body())
                break
            for payload in chunk(delta, is_first):
                await send(payload)
            is_first = False
            if delta.finish_reason is not None:
                _log_done(service, request.path, prep, delta, start)
                break
        await send("[DONE]")
        await response.write_eof()
        return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions`` (OpenAI chat, streaming or not)."""
    service = request.app[SERVICE]
    req = parse(ChatCompletionRequest, await _body(request))
    prep = service.prepare_chat_completion(req)
    rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": rid, "created": created, "model": prep.model}
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(delta: Delta, first: bool) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            d: dict[str, Any] = {"role": "assistant", "content": delta.text} if first else {"content": delta.text}
            if delta.text or first or delta.finish_reason is None:
                out.append(
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}],
                    }
                )
            if delta.finish_reason is not None:
                out.append(
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": delta.finish_reason}],
                    }
                )
                if include_usage:
                    out.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": _usage(delta)})
            return out

        return await _sse(request, service, prep, chunk)
    start = time.perf_counter()
    text, last = await _collect(service, prep)
    _log_done(service, request.path, prep, last, start, text)
    return _json(
        200,
        {
            **base,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": last.finish_reason,
                }
            ],
            "usage": _usage(last),
        },
    )


async def completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/completions`` (OpenAI legacy completions, streaming or not)."""
    service = request.app[SERVICE]
    req = parse(CompletionRequest, await _body(request))
    prep = service.prepare_completion(req)
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": rid, "object": "text_completion", "created": created, "model": prep.model}
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(delta: Delta, first: bool) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = [
                {
                    **base,
                    "choices": [
                        {"index": 0, "text": delta.text, "logprobs": None, "finish_reason": delta.finish_reason}
                    ],
                }
            ]
            if delta.finish_reason is not None and include_usage:
                out.append({**base, "choices": [], "usage": _usage(delta)})
            return out

        return await _sse(request, service, prep, chunk)
    start = time.perf_counter()
    text, last = await _collect(service, prep)
    _log_done(service, request.path, prep, last, start, text)
    return _json(
        200,
        {
            **base,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": last.finish_reason}],
            "usage": _usage(last),
        },
    )


async def seed_chat(request: web.Request) -> web.StreamResponse:
    """The seed's ``POST /chat`` → ``{"Result": text}``."""
    service = request.app[SERVICE]
    req = parse(ChatRequest, await _body(request))
    prep, prefix = service.prepare_seed_chat(req)
    start = time.perf_counter()
    text, last = await _collect(service, prep)
    _log_done(service, request.path, prep, last, start, text)
    return _json(200, {"Result": prefix + text})


async def models(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models``: the base model, then each adapter (``parent`` = the base model)."""
    service = request.app[SERVICE]
    data = [
        {
            "id": service.base_name,
            "object": "model",
            "created": service.created,
            "owned_by": "kaito",
            "root": service.base_name,
            "parent": None,
            "max_model_len": service.max_model_len,
        }
    ]
    for name in service.adapters:
        data.append(
            {
                "id": name,
                "object": "model",
                "created": service.created,
                "owned_by": "kaito",
                "root": name,
                "parent": service.base_name,
                "max_model_len": service.max_model_len,
            }
        )
    return _json(200, {"object": "list", "data": data})


async def health(request: web.Request) -> web.StreamResponse:
    """``GET /health``: 200 while the engine runs, 503 otherwise (readiness and liveness probes)."""
    engine = request.app[SERVICE].engine
    if engine.alive:
        return _json(200, {"status": "ok"})
    return _json(503, {"status": "unavailable", "error": repr(engine.error) if engine.error else "stopped"})


async def metrics(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: Prometheus text format."""
    service = request.app[SERVICE]
    body = generate_latest(service.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(service: Service, *, max_body_bytes: int = 4 * 1024 * 1024) -> web.Application:
    """The aiohttp application. The engine is started and stopped with the app (``on_startup``/``on_cleanup``)."""
    app = web.Application(middlewares=[_errors_and_metrics], client_max_size=max_body_bytes)
    app[SERVICE] = service
    app[MAX_BODY] = max_body_bytes
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/chat", seed_chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics)

    async def on_startup(app: web.Application) -> None:
        if not service.engine.alive:
            service.engine.start()

    async def on_cleanup(app: web.Application) -> None:
        await service.engine.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
