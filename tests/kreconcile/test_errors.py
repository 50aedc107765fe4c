"""Typed API errors from Status bodies."""

from __future__ import annotations

import json

import pytest

from kreconcile.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    ServerError,
    TooManyRequests,
    UnsupportedMediaType,
    from_response,
    ignore_not_found,
)


def status(code: int, reason: str, message: str = "m", **details: object) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
                       "message": message, "details": details}).encode()


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (410, "Expired", Expired),
        (410, "Gone", Expired),
        (403, "Forbidden", Forbidden),
        (415, "UnsupportedMediaType", UnsupportedMediaType),
        (500, "InternalError", ServerError),
        (503, "ServiceUnavailable", ServerError),
    ],
)
def test_reason_picks_the_error_class(code: int, reason: str, cls: type[ApiError]) -> None:
    err = from_response(code, status(code, reason, "boom"))
    assert type(err) is cls
    assert (err.code, err.reason, err.message) == (code, reason, "boom")
    assert err.status["kind"] == "Status"


def test_alreadyexists_and_conflict_share_409_but_are_distinct() -> None:
    assert not isinstance(from_response(409, status(409, "AlreadyExists")), Conflict)
    assert isinstance(from_response(409, status(409, "Conflict")), Conflict)


def test_invalid_exposes_field_causes_in_order() -> None:
    body = status(422, "Invalid", "Workspace.kaito.sh \"w\" is invalid",
                  causes=[{"field": "spec.resource.count", "message": "must be >= 1", "reason": "FieldValueInvalid"},
                          {"field": "spec.inference", "message": "Required value", "reason": "FieldValueRequired"}])
    err = from_response(422, body)
    assert isinstance(err, Invalid)
    assert [(c.field, c.reason) for c in err.causes] == [
        ("spec.resource.count", "FieldValueInvalid"), ("spec.inference", "FieldValueRequired")]


def test_retry_after_from_header_or_details() -> None:
    assert from_response(429, status(429, "TooManyRequests"), retry_after=3).retry_after == 3
    err = from_response(429, status(429, "TooManyRequests", retryAfterSeconds=7))
    assert isinstance(err, TooManyRequests) and err.retry_after == 7


def test_non_status_body_is_wrapped_by_code() -> None:
    err = from_response(404, b"404 page not found")
    assert isinstance(err, NotFound) and err.message == "404 page not found"
    assert isinstance(from_response(502, b""), ServerError)
    assert type(from_response(418, b"teapot")) is ApiError


async def test_ignore_not_found_returns_none_but_passes_other_errors() -> None:
    async def missing() -> dict[str, str]:
        raise NotFound("gone")

    async def conflict() -> dict[str, str]:
        raise Conflict("stale")

    async def ok() -> dict[str, str]:
        return {"a": "b"}

    assert await ignore_not_found(missing()) is None
    assert await ignore_not_found(ok()) == {"a": "b"}
    with pytest.raises(Conflict):
        await ignore_not_found(conflict())
