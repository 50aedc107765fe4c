"""Typed API errors, built from the ``Status`` object the API server returns with every failed request.

The server answers a failed request with a ``metav1.Status`` body (``{"kind": "Status", "status": "Failure",
"reason": "NotFound", "code": 404, "message": ..., "details": {...}}``). :func:`from_response` turns it into one of
the classes below, chosen by ``reason`` first and HTTP ``code`` second, as client-go's ``apierrors.ReasonForError``
does. Every error keeps the whole Status in :attr:`ApiError.status`.

Callers test with ``except NotFound`` or the ``is_*`` helpers; :func:`ignore_not_found` turns a NotFound into
``None`` (controller-runtime's ``client.IgnoreNotFound``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


class Cause(NamedTuple):
    """One entry of ``Status.details.causes``: which field was wrong, why, and the machine-readable reason
    (``FieldValueRequired``, ``FieldValueInvalid``, ...)."""

    field: str
    message: str
    reason: str


class ApiError(Exception):
    """A request the API server answered with a non-2xx status.

    Attributes:
        status: the server's ``Status`` dict (synthesized from the HTTP code when the body was not a Status).
        code: the HTTP status code (``status["code"]``).
        reason: the Status ``reason`` (``"NotFound"``, ``"Conflict"``, ...; ``""`` when the server gave none).
        message: the Status ``message``.
        retry_after: seconds the server asked us to wait (``Retry-After`` header or
            ``details.retryAfterSeconds``), else None.
    """

    default_code = 500
    default_reason = ""

    def __init__(self, status: Mapping[str, Any] | str | None = None, *, retry_after: float | None = None) -> None:
        if status is None or isinstance(status, str):
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": status or self.default_reason or type(self).__name__,
                "reason": self.default_reason,
                "code": self.default_code,
            }
        self.status: dict[str, Any] = dict(status)
        self.code: int = int(self.status.get("code") or self.default_code)
        self.reason: str = str(self.status.get("reason") or "")
        self.message: str = str(self.status.get("message") or "")
        details = self.status.get("details") or {}
        if retry_after is None and isinstance(details, Mapping) and details.get("retryAfterSeconds") is not None:
            retry_after = float(details["retryAfterSeconds"])
        self.retry_after: float | None = retry_after
        head = f"{self.code} {self.reason}" if self.reason else str(self.code)
        super().__init__(f"{head}: {self.message}")

    @property
    def details(self) -> dict[str, Any]:
        """``Status.details`` (``name``, ``group``, ``kind``, ``causes``...), ``{}`` when absent."""
        details = self.status.get("details")
        return dict(details) if isinstance(details, Mapping) else {}


class BadRequest(ApiError):
    """400: the request was malformed (e.g. a JSON object sent as a JSON Patch, a namespace mismatch)."""

    default_code, default_reason = 400, "BadRequest"


class Unauthorized(ApiError):
    """401: no or bad credentials; check the kubeconfig user or the service account token."""

    default_code, default_reason = 401, "Unauthorized"


class Forbidden(ApiError):
    """403: authenticated but RBAC denies the verb on this resource; grant it in a (Cluster)Role."""

    default_code, default_reason = 403, "Forbidden"


class NotFound(ApiError):
    """404: the object (or the resource type) does not exist."""

    default_code, default_reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    """405: the resource does not support this verb."""

    default_code, default_reason = 405, "MethodNotAllowed"


class AlreadyExists(ApiError):
    """409 AlreadyExists: a create named an object that exists."""

    default_code, default_reason = 409, "AlreadyExists"


class Conflict(ApiError):
    """409 Conflict: the write carried a stale ``metadata.resourceVersion``; re-read the object and retry."""

    default_code, default_reason = 409, "Conflict"


class Expired(ApiError):
    """410 Expired/Gone: the resourceVersion (watch) or continue token (list) is older than the server keeps;
    list again from scratch."""

    default_code, default_reason = 410, "Expired"


class UnsupportedMediaType(ApiError):
    """415: the server does not accept this patch type for this resource (e.g. strategic merge patch on a custom
    resource, or server-side apply on a server without it). Use ``patch_type="merge"`` instead."""

    default_code, default_reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    """422: the object failed validation. :attr:`causes` lists each bad field."""

    default_code, default_reason = 422, "Invalid"

    @property
    def causes(self) -> list[Cause]:
        """``Status.details.causes`` as (field, message, reason) tuples, in the server's order."""
        raw = self.details.get("causes") or []
        return [
            Cause(str(c.get("field", "")), str(c.get("message", "")), str(c.get("reason", "")))
            for c in raw
            if isinstance(c, Mapping)
        ]


class TooManyRequests(ApiError):
    """429: the server is throttling us; :attr:`retry_after` says for how many seconds."""

    default_code, default_reason = 429, "TooManyRequests"


class ServerError(ApiError):
    """5xx: the server failed (InternalError, ServiceUnavailable, Timeout...); usually worth retrying."""

    default_code, default_reason = 500, "InternalError"


class NoKindMatchError(LookupError):
    """The API server serves no resource for a GroupVersionKind (the CRD is not installed, or the version or
    kind is misspelled). Raised by the RESTMapper after refreshing discovery once."""

    def __init__(self, gvk: object, detail: str = "") -> None:
        self.gvk = gvk
        msg = f"no resource is served for {gvk}; install its CRD or check apiVersion and kind"
        super().__init__(f"{msg} ({detail})" if detail else msg)


_BY_REASON: dict[str, type[ApiError]] = {
    "BadRequest": BadRequest,
    "Unauthorized": Unauthorized,
    "Forbidden": Forbidden,
    "NotFound": NotFound,
    "MethodNotAllowed": MethodNotAllowed,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Expired": Expired,
    "Gone": Expired,
    "UnsupportedMediaType": UnsupportedMediaType,
    "Invalid": Invalid,
    "TooManyRequests": TooManyRequests,
    "InternalError": ServerError,
    "ServiceUnavailable": ServerError,
    "ServerTimeout": ServerError,
    "Timeout": ServerError,
}
_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Expired,
    415: UnsupportedMediaType,
    422: Invalid,
    429: TooManyRequests,
}


def from_status(status: Mapping[str, Any], *, code: int | None = None, retry_after: float | None = None) -> ApiError:
    """The typed error for a ``Status`` dict (``code`` overrides/fills ``status["code"]``)."""
    st = dict(status)
    if code is not None and not st.get("code"):
        st["code"] = code
    reason = str(st.get("reason") or "")
    c = int(st.get("code") or 0)
    cls = _BY_REASON.get(reason) or _BY_CODE.get(c) or (ServerError if c >= 500 else ApiError)
    return cls(st, retry_after=retry_after)


def from_response(
    code: int, body: bytes | str | Mapping[str, Any] | None, retry_after: float | None = None
) -> ApiError:
    """The typed error for an HTTP response: ``body`` is parsed as a Status when it is one; otherwise a Status is
    synthesized from ``code`` with the body text as its message."""
    status: Mapping[str, Any] | None = None
    if isinstance(body, Mapping):
        status = body
    elif body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("kind") == "Status":
            status = parsed
    if status is None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        cls = _BY_CODE.get(code) or (ServerError if code >= 500 else ApiError)
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": text.strip() or f"HTTP {code}",
            "reason": cls.default_reason if cls is not ApiError else "",
            "code": code,
        }
    return from_status(status, code=code, retry_after=retry_after)


async def ignore_not_found(aw: Awaitable[T]) -> T | None:
    """Await ``aw``; return None instead of raising :class:`NotFound` (controller-runtime's IgnoreNotFound).

    Example: ``obj = await ignore_not_found(client.get(gvk, "name", "ns"))``.
    """
    try:
        return await aw
    except NotFound:
        return None


def is_not_found(err: BaseException) -> bool:
    """True for :class:`NotFound`."""
    return isinstance(err, NotFound)


def is_conflict(err: BaseException) -> bool:
    """True for :class:`Conflict` (stale resourceVersion), not for AlreadyExists."""
    return isinstance(err, Conflict)


def is_already_exists(err: BaseException) -> bool:
    """True for :class:`AlreadyExists`."""
    return isinstance(err, AlreadyExists)
