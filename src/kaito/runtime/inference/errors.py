"""Errors the inference server returns, in the OpenAI error shape.

Every error a client can cause is an :class:`APIError` carrying the HTTP status, the OpenAI ``type`` and ``code``
and the request field (``param``) it is about, so the HTTP layer can answer
``{"error": {"message", "type", "param", "code"}}`` exactly as the OpenAI API does and the ``openai`` client raises
its matching exception class (``BadRequestError`` for 400, ``NotFoundError`` for 404, ``RateLimitError`` for 429).
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error answered to the client; ``status`` is the HTTP status code.

    Attributes:
        status: HTTP status (400, 404, 413, 429, 503, 504).
        message: a sentence saying what is wrong and how to fix it.
        type: OpenAI error type (``invalid_request_error``, ``rate_limit_exceeded``, ...).
        param: the request field the error is about (dotted path, e.g. ``messages.0.content``), or None.
        code: OpenAI error code (e.g. ``model_not_found``), or None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape)."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """400 ``invalid_request_error`` about ``param``."""
    return APIError(400, message, param=param, code=code)


def model_not_found(name: str, available: list[str]) -> APIError:
    """404 for an unknown ``model``; the message lists the served names."""
    return APIError(
        404,
        f"model {name!r} does not exist on this server; use one of {available} (see GET /v1/models)",
        param="model",
        code="model_not_found",
    )


def rate_limited(waiting: int) -> APIError:
    """429 ``rate_limit_exceeded``: the waiting queue holds ``waiting`` requests, its limit."""
    return APIError(
        429,
        f"the server is at capacity ({waiting} requests already waiting); retry after a short delay",
        type="rate_limit_exceeded",
        code="rate_limit_exceeded",
    )


def timed_out(seconds: float) -> APIError:
    """504: the request ran longer than the server's per-request timeout."""
    return APIError(
        504,
        f"the request did not finish within the server's request timeout of {seconds:g} s; "
        "ask for fewer tokens (max_tokens) or raise --request-timeout",
        type="timeout_error",
        code="timeout",
    )


class EngineStoppedError(RuntimeError):
    """The engine was shut down (or its worker died) while the request was queued or running."""


class StartupError(RuntimeError):
    """The server cannot start: the message says what is missing or wrong and how to fix it."""
