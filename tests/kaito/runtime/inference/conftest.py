"""Fixtures of the inference runtime tests.

Two models: ``tiny_model_dir``, a randomly initialised 2-layer Llama with SmolLM2's real tokenizer (fast: the
scheduler, cache, API and fuzz tests run on it in-process), and ``model_dir``, the real SmolLM2-135M-Instruct
(converted once and cached), served by one subprocess per test session (``live_server``) for the ``slow`` tests.
Both get a small LoRA adapter made with peft from a fixed seed (random A and B, so it changes the output).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer

from kaito.runtime.inference.adapters import attach_adapters, discover_adapters
from kaito.runtime.inference.api import create_app
from kaito.runtime.inference.engine import Engine, EngineConfig
from kaito.runtime.inference.metrics import EngineMetrics
from kaito.runtime.inference.model import LoadedModel, ModelRunner, load_model
from kaito.runtime.inference.serving import Service
from kaito.runtime.smollm2 import ensure_model_dir

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    """A private temporary directory for the session's models and adapters, removed at the end. Not pytest's
    basetemp: on a machine where other pytest sessions start, pytest deletes all but the 3 newest basetemps,
    which would pull the files from under a long session's server."""
    path = Path(tempfile.mkdtemp(prefix="kaito-inference-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real SmolLM2-135M-Instruct directory (converted from the GGUF on first use, then cached)."""
    return ensure_model_dir()


def make_lora(model: Any, out: Path, seed: int, alpha: int = 8) -> Any:
    """Save a rank-4 LoRA adapter on q_proj/v_proj with random A and B (seeded) for ``model`` at ``out``; with
    ``alpha`` 32 on SmolLM2 it changes the greedy token at ~95 % of positions (8: ~33 %)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(str(out))
    return peft_model.unload()  # the base model again, without LoRA layers


@pytest.fixture(scope="session")
def tiny_model_dir(model_dir: Path, session_dir: Path) -> Path:
    """A random 2-layer Llama (hidden 64, 4 heads, 2 KV heads, 256 positions) with SmolLM2's tokenizer."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = session_dir / "tiny-model"
    out.mkdir()
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)
    torch.manual_seed(1234)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # larger logits make greedy choices decisive (random init gives near-uniform logits and near-ties)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # logits with a standard deviation of about 3
    model.generation_config = GenerationConfig(eos_token_id=2, bos_token_id=1, pad_token_id=2)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, session_dir: Path) -> Path:
    """Adapter directory with one adapter ``tiny-lora`` for the tiny model."""
    from transformers import AutoModelForCausalLM

    root = session_dir / "tiny-adapters"
    make_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), root / "tiny-lora", seed=7)
    return root


@dataclass
class TinyServer:
    """An in-process server on the tiny model."""

    client: TestClient[Any, Any]
    service: Service
    runner: GatedRunner

    @property
    def engine(self) -> Engine:
        return self.service.engine


class FakeClock:
    """A monotonic clock the test advances (the engine's per-request timeout reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def build_service(
    model_dir: Path,
    *,
    adapter_dir: Path | None = None,
    max_batch_size: int = 8,
    max_waiting: int = 16,
    max_model_len: int = 128,
    request_timeout: float = 600.0,
    clock: Callable[[], float] = time.monotonic,
    runner_wrapper: Callable[[ModelRunner], Any] | None = None,
    threads: int | None = None,
    prefill_threads: int | None = None,
    prefill_chunk_tokens: int = 512,
    dtype: str = "float32",
    prefix_cache_bytes: int = 256 * 2**20,
) -> Service:
    """A :class:`Service` on ``model_dir`` (CPU, float32 unless ``dtype`` says otherwise), like the server's
    ``build_service`` but in-process."""
    loaded: LoadedModel = load_model(model_dir, device="cpu", dtype=dtype)
    specs = discover_adapters(adapter_dir, {}) if adapter_dir else []
    loaded.model = attach_adapters(loaded.model, specs, "tiny")
    runner = ModelRunner(loaded, max_slots=max_batch_size, max_positions=max_model_len)
    metrics = EngineMetrics()
    engine = Engine(
        runner_wrapper(runner) if runner_wrapper else runner,
        EngineConfig(
            max_batch_size=max_batch_size,
            max_waiting=max_waiting,
            max_model_len=max_model_len,
            request_timeout=request_timeout,
            threads=threads,
            prefill_threads=prefill_threads,
            prefill_chunk_tokens=prefill_chunk_tokens,
            prefix_cache_bytes=prefix_cache_bytes,
        ),
        metrics=metrics,
        clock=clock,
        use_adapters=bool(specs),
    )
    return Service(
        engine=engine,
        tokenizer=loaded.tokenizer,
        base_name="tiny",
        adapters=specs,
        max_model_len=max_model_len,
        metrics=metrics,
    )


class GatedRunner:
    """Wraps a runner so a test decides when forward passes may run: each pass waits for its gate (both open by
    default). Lets tests hold a sequence in the batch or keep requests waiting without timing assumptions."""

    def __init__(self, inner: ModelRunner) -> None:
        self.inner = inner
        self.loaded = inner.loaded
        self.cache = inner.cache
        self.prefill_gate = threading.Event()
        self.decode_gate = threading.Event()
        self.prefill_gate.set()
        self.decode_gate.set()
        self.in_prefill = threading.Event()

    def prefill(self, *args: Any) -> torch.Tensor:
        self.in_prefill.set()
        assert self.prefill_gate.wait(60), "prefill gate never opened"
        return self.inner.prefill(*args)

    def decode(self, *args: Any) -> torch.Tensor:
        assert self.decode_gate.wait(60), "decode gate never opened"
        return self.inner.decode(*args)

    def __getattr__(self, name: str) -> Any:  # anything else (prefill_chunked): the inner runner's
        return getattr(self.inner, name)


@pytest.fixture
async def tiny_server(tiny_model_dir: Path, tiny_adapter_dir: Path) -> AsyncIterator[TinyServer]:
    """The tiny model with adapter ``tiny-lora`` behind the real aiohttp app (TestServer on 127.0.0.1); the
    engine's runner is a :class:`GatedRunner` (``server.runner``), open unless a test closes a gate."""
    gated: list[GatedRunner] = []

    def wrap(inner: ModelRunner) -> GatedRunner:
        gated.append(GatedRunner(inner))
        return gated[0]

    service = build_service(tiny_model_dir, adapter_dir=tiny_adapter_dir, runner_wrapper=wrap)
    app = create_app(service, max_body_bytes=64 * 1024)
    client: TestClient[Any, Any] = TestClient(TestServer(app, handler_cancellation=True))
    await client.start_server()
    try:
        yield TinyServer(client, service, gated[0])
    finally:
        gated[0].prefill_gate.set()
        gated[0].decode_gate.set()
        await client.close()


def _is_our_server(url: str, proc: subprocess.Popen[bytes]) -> bool:
    """True when ``url`` answers ``/v1/models`` with our base model and our process is alive (another process may
    grab the port between :func:`_free_port` and the server's bind on a busy machine)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    ids = [m.get("id") for m in body.get("data", [])] if isinstance(body, dict) else []
    return proc.poll() is None and "smollm2-135m-instruct" in ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """The real server as a subprocess: ``url`` (``http://127.0.0.1:PORT``), adapters ``lora-a`` and ``lora-b``."""

    url: str
    base_model: str
    log_path: Path


@pytest.fixture(scope="session")
def live_adapter_dir(model_dir: Path, session_dir: Path) -> Path:
    """Two LoRA adapters for SmolLM2: ``lora-a`` (strength 1.0) and ``lora-b`` (strength 0.5)."""
    from transformers import AutoModelForCausalLM

    root = session_dir / "adapters"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for name, seed in (("lora-a", 1), ("lora-b", 2)):
        model = make_lora(model, root / name, seed=seed, alpha=32)
    return root


@pytest.fixture(scope="session")
def live_server(model_dir: Path, live_adapter_dir: Path, session_dir: Path) -> Iterator[LiveServer]:
    """``python -m kaito.runtime.inference`` on the real model with the default ``--dtype auto`` (float16 weights
    on an AVX2 CPU, as pods run it), shared by the whole test session."""
    port = _free_port()
    log_path = session_dir / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "lora-b": "0.5", "KAITO_MAX_MODEL_LEN": "1024"}
    cmd = [
        sys.executable,
        "-m",
        "kaito.runtime.inference",
        "--preset",
        "smollm2-135m-instruct",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--adapter-dir",
        str(live_adapter_dir),
        "--max-batch-size",
        "8",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a loaded 2-core machine can take minutes to import torch and load
        while not _is_our_server(url, proc):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready within 600 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)  # polling a subprocess for readiness, not waiting for logic
        yield LiveServer(url, "smollm2-135m-instruct", log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def post_json(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    """POST ``body`` as JSON; return (status, decoded JSON body)."""
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)
