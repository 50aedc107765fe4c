"""The API server's error type: a ``metav1.Status`` with the reason and code the real kube-apiserver uses.

Reasons and codes follow ``k8s.io/apimachinery/pkg/api/errors`` (NotFound 404, AlreadyExists 409, Conflict 409,
Invalid 422, Expired 410, Gone 410, BadRequest 400, MethodNotAllowed 405, NotAcceptable 406,
UnsupportedMediaType 415, RequestEntityTooLarge 413, TooManyRequests 429, InternalError 500, Forbidden 403,
Timeout 504, ServiceUnavailable 503).
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error answered to the client as a ``Status`` object (``kind: Status``, ``status: Failure``).

    ``code`` is the HTTP status; ``reason`` the CamelCase ``StatusReason``; ``details`` the optional
    ``StatusDetails`` dict (``name``, ``group``, ``kind``, ``causes``: ``[{"reason", "message", "field"}]``);
    ``headers`` extra response headers (``Retry-After`` for 429).
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The ``metav1.Status`` body for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]  # metav1.Status.reason is omitempty (a webhook may deny without one)
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> APIError:
    """404 NotFound: ``pods "x" not found`` (the real message shape)."""
    return APIError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        {"name": name, "group": group, "kind": resource},
    )


def already_exists(resource: str, group: str, name: str) -> APIError:
    """409 AlreadyExists: ``configmaps "x" already exists``."""
    return APIError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": resource},
    )


def conflict(resource: str, group: str, name: str, why: str) -> APIError:
    """409 Conflict: ``Operation cannot be fulfilled on pods "x": <why>``."""
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": resource},
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> APIError:
    """422 Invalid with ``details.causes[].field`` (``causes`` items: ``{"reason", "message", "field"}``)."""
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    gk = f"{kind}.{group}" if group else kind
    return APIError(
        422,
        "Invalid",
        f'{gk} "{name}" is invalid: {summary}',
        {"name": name, "group": group, "kind": kind, "causes": causes},
    )


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One ``StatusCause`` (``reason`` is e.g. FieldValueInvalid, FieldValueRequired, FieldValueNotSupported)."""
    return {"reason": reason, "message": message, "field": field}


def bad_request(message: str) -> APIError:
    """400 BadRequest."""
    return APIError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    """405 MethodNotAllowed."""
    return APIError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> APIError:
    """415 UnsupportedMediaType (the real message)."""
    return APIError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media '
                    f'types include: application/json-patch+json, application/merge-patch+json, '
                    f'application/apply-patch+yaml (got "{content_type}")')


def expired(message: str) -> APIError:
    """410 Expired (``too old resource version``)."""
    return APIError(410, "Expired", message)


def forbidden(resource: str, group: str, name: str, why: str) -> APIError:
    """403 Forbidden: ``pods "x" is forbidden: <why>``."""
    return APIError(
        403,
        "Forbidden",
        f'{_qualified(resource, group)} "{name}" is forbidden: {why}',
        {"name": name, "group": group, "kind": resource},
    )


def internal(message: str) -> APIError:
    """500 InternalError."""
    return APIError(500, "InternalError", f"Internal error occurred: {message}")
