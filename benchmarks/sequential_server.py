"""The sequential baseline of benchmarks/inference.py: one ``model.generate`` per request, one request at a time.

This is the shape of upstream Kaito's transformers runtime (a FastAPI app calling a transformers pipeline per
request): requests queue behind a lock and each runs ``generate`` alone. It speaks just enough of the OpenAI chat
API for the benchmark (``POST /v1/chat/completions`` with ``stream``, ``GET /v1/models``).

Run: ``python benchmarks/sequential_server.py --model-dir DIR --port 5001 [--dtype float32] [--threads N]``
(``--threads``: torch CPU threads; default torch's own choice, the number of cores, as upstream runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

import torch
from aiohttp import web
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype).eval()
    lock = asyncio.Lock()

    def inputs(body: dict) -> torch.Tensor:
        text = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
        return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]

    def generate(ids: torch.Tensor, max_tokens: int, streamer: TextIteratorStreamer | None = None) -> list[int]:
        if args.threads:  # per thread: OpenMP's thread count is set in the thread that runs the model
            torch.set_num_threads(args.threads)
        with torch.inference_mode():
            out = model.generate(
                ids, max_new_tokens=max_tokens, do_sample=False, streamer=streamer, pad_token_id=tokenizer.eos_token_id
            )
        return out[0, ids.shape[1] :].tolist()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        ids = inputs(body)
        max_tokens = int(body.get("max_tokens") or 64)
        async with lock:
            if not body.get("stream"):
                new = await asyncio.to_thread(generate, ids, max_tokens)
                text = tokenizer.decode(new, skip_special_tokens=True)
                n = len([t for t in new if t != tokenizer.eos_token_id])
                return web.json_response(
                    {
                        "id": "seq",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "seq",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {
                            "prompt_tokens": ids.shape[1],
                            "completion_tokens": n,
                            "total_tokens": ids.shape[1] + n,
                        },
                    }
                )
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            result: list[list[int]] = []
            worker = threading.Thread(target=lambda: result.append(generate(ids, max_tokens, streamer)))
            worker.start()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            it = iter(streamer)
            while True:
                piece = await asyncio.to_thread(next, it, None)
                if piece is None:
                    break
                chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.to_thread(worker.join)
            n = len([t for t in result[0] if t != tokenizer.eos_token_id])
            usage = {"prompt_tokens": ids.shape[1], "completion_tokens": n, "total_tokens": ids.shape[1] + n}
            await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
            await resp.write_eof()
            return resp

    async def models(request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": "seq", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
