"""Structured logging with structlog: one event name per line, stable keys (``controller``, ``namespace``, ``name``,
``reconcile_id``, ``gvk``, ``duration_s``).

The controller binds ``controller``, ``namespace``, ``name`` and ``reconcile_id`` into structlog's context variables
for the duration of each reconcile, so every line a reconciler logs through :func:`get_logger` carries them without
passing a logger around (controller-runtime puts the same keys in the context logger).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

_HANDLER_MARK = "_kreconcile_handler"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


def configure_logging(
    fmt: Literal["json", "console"] = "console",
    level: str = "info",
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog process-wide.

    Args:
        fmt: ``"json"``: one JSON object per line (for log shippers); ``"console"``: aligned, human-readable lines
            (colours only when ``stream`` is a terminal).
        level: lowest level written: ``debug``, ``info`` (default), ``warning``, ``error`` or ``critical``
            (case-insensitive).
        stream: where to write (default ``sys.stderr``).

    Every line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``event``, the ``logger`` name when the logger came
    from :func:`get_logger`, the bound context variables, and a formatted traceback for ``exc_info``. Records of
    stdlib ``logging`` (aiohttp, kubernetes-asyncio) are rendered the same way by one root handler, which replaces
    the handler of an earlier call.

    Raises:
        ValueError: unknown ``fmt`` or ``level`` (the message lists the allowed values).
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"log format {fmt!r} is not supported; use 'json' or 'console'")
    lvl = _LEVELS.get(str(level).lower())
    if lvl is None:
        raise ValueError(f"log level {level!r} is not supported; use one of {', '.join(sorted(set(_LEVELS)))}")
    out = stream if stream is not None else sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: list[Any]
    if fmt == "json":
        renderer = [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        renderer = [
            structlog.dev.set_exc_info,
            structlog.dev.ConsoleRenderer(colors=bool(getattr(out, "isatty", lambda: False)())),
        ]
    structlog.configure(
        processors=shared + renderer,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # stdlib loggers (aiohttp, kubernetes-asyncio, asyncio) go to the same stream in the same format
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)


def get_logger(name: str, **initial: Any) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger with ``logger=name`` and ``initial`` bound (e.g. ``get_logger("workspace", gvk=...)``)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name).bind(logger=name, **initial)
    return logger
