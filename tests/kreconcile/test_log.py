"""Logging: JSON and console output with the bound reconcile context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from kreconcile.log import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_level_logger_timestamp_and_the_bound_context() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = get_logger("workspace", gvk="kaito.sh/v1beta1, Kind=Workspace")
    with structlog.contextvars.bound_contextvars(controller="workspace", namespace="ns", name="w", reconcile_id="r1"):
        log.info("nodes_ready", count=2)
    log.debug("hidden")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["event"] == "nodes_ready" and first["level"] == "info" and first["count"] == 2
    assert (first["controller"], first["namespace"], first["name"], first["reconcile_id"]) == ("workspace", "ns", "w",
                                                                                               "r1")
    assert first["logger"] == "workspace" and first["gvk"].startswith("kaito.sh")
    assert first["timestamp"].endswith("Z")
    assert "reconcile_id" not in lines[1]
    assert lines[1]["exception"][0]["exc_type"] == "RuntimeError"


def test_console_format_and_level_filtering() -> None:
    out = io.StringIO()
    configure_logging("console", "WARNING", stream=out)
    get_logger("x").info("quiet")
    get_logger("x").warning("loud", key="v")
    text = out.getvalue()
    assert "quiet" not in text and "loud" in text and "key=v" in text and "\x1b[" not in text


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="'json' or 'console'"):
        configure_logging("xml", "info")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level"):
        configure_logging("json", "verbose")


def test_stdlib_logging_is_rendered_in_the_same_format_and_reconfiguring_replaces_the_handler() -> None:
    first, out = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("json", "info", stream=out)
    logging.getLogger("aiohttp.client").warning("retrying %s", "GET")
    logging.getLogger("aiohttp.client").debug("hidden")
    assert first.getvalue() == ""
    (line,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (line["event"], line["level"], line["logger"]) == ("retrying GET", "warning", "aiohttp.client")
