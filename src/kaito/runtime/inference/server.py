"""Assembling and running the server: logging, rank check, model, adapters, engine, HTTP.

:func:`build_service` does everything that can fail at startup (bad flags, incomplete model directory, a bad
adapter, a non-zero rank), so the process exits with one clear message before it listens; :func:`main` is the
``python -m kaito.runtime.inference`` entry point.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import structlog
import torch
from aiohttp import web

from kaito.runtime.inference.adapters import attach_adapters, discover_adapters
from kaito.runtime.inference.api import create_app
from kaito.runtime.inference.config import ServerConfig, check_single_node, parse_config
from kaito.runtime.inference.engine import Engine, EngineConfig
from kaito.runtime.inference.errors import StartupError
from kaito.runtime.inference.metrics import EngineMetrics
from kaito.runtime.inference.model import ModelRunner, cpu_cores, load_model, resolve_threads
from kaito.runtime.inference.serving import Service

log = structlog.get_logger("kaito.runtime.inference")


def configure_logging(fmt: str) -> None:
    """structlog to stderr: one JSON object per line (``json``) or coloured key=value (``console``)."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def build_service(cfg: ServerConfig) -> Service:
    """Load the model and adapters and build the engine and service (the engine starts with the app).

    Raises:
        StartupError: anything that prevents serving, with the cause and the fix.
    """
    check_single_node()
    if cfg.preset is not None:
        from kaito.runtime.smollm2 import ModelUnavailableError, ensure_model_dir

        try:
            model_dir = ensure_model_dir()
        except ModelUnavailableError as exc:
            raise StartupError(str(exc)) from exc
    else:
        assert cfg.model_dir is not None
        model_dir = cfg.model_dir
    loaded = load_model(model_dir, device=cfg.device, dtype=cfg.dtype)
    threads = resolve_threads(cfg.threads, loaded.device)
    if threads is not None:  # this thread's (loading, tokenizing); the engine sets its worker's own
        torch.set_num_threads(threads)
    max_len = cfg.max_model_len or loaded.context_window
    if max_len > loaded.context_window:
        raise StartupError(
            f"--max-model-len {max_len} exceeds the model's context window of {loaded.context_window} tokens"
        )
    specs = discover_adapters(cfg.adapter_dir)
    loaded.model = attach_adapters(loaded.model, specs, cfg.base_name())
    runner = ModelRunner(loaded, max_slots=cfg.max_batch_size, max_positions=max_len)
    metrics = EngineMetrics()
    engine = Engine(
        runner,
        EngineConfig(
            max_batch_size=cfg.max_batch_size,
            max_waiting=cfg.max_waiting,
            max_model_len=max_len,
            request_timeout=cfg.request_timeout,
            threads=threads,
            prefix_cache_bytes=cfg.prefix_cache_mib * 2**20,
            prefill_threads=cpu_cores() if cfg.threads is None and loaded.device.type == "cpu" else None,
        ),
        metrics=metrics,
        use_adapters=bool(specs),
    )
    log.info(
        "model_loaded",
        model_dir=str(model_dir),
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        weights=loaded.weights,
        max_model_len=max_len,
        adapters={s.name: s.strength for s in specs},
        threads=threads if threads is not None else torch.get_num_threads(),
    )
    return Service(
        engine=engine,
        tokenizer=loaded.tokenizer,
        base_name=cfg.base_name(),
        adapters=specs,
        max_model_len=max_len,
        metrics=metrics,
        log_prompts=cfg.log_prompts,
    )


async def serve(cfg: ServerConfig, service: Service) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, finish the engine and exit."""
    app = create_app(service, max_body_bytes=cfg.max_body_bytes)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    log.info("listening", host=cfg.host, port=cfg.port, models=service.model_names())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting_down")
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for a startup error, with its message on stderr)."""
    try:
        cfg = parse_config(argv)
        configure_logging(cfg.log_format)
        service = build_service(cfg)
    except StartupError as exc:
        configure_logging("json")
        log.error("startup_failed", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(cfg, service))
    return 0
